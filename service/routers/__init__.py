"""HTTP routes, one module per resource; each reads request -> domain call -> response."""
