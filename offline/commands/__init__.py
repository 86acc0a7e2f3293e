"""`python -m offline COMMAND`: one thin module per command, parsing options and calling the library."""
