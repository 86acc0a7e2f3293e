"""A frozen config dataclass as command-line options: each field carries its help text, so the
options and the config never drift (`offline synth`, `offline plant`)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

Config = TypeVar("Config")


def option(default: Any, help_text: str) -> Any:
    """A config field with its default and the help its command-line option shows."""
    return dataclasses.field(default=default, metadata={"help": help_text})


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--field-name` option per field of the dataclass `cls`, typed and defaulted like the field."""
    for f in dataclasses.fields(cls):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, help=f.metadata["help"]
        )


def from_args(cls: type[Config], args: argparse.Namespace) -> Config:
    """The `cls` config the parsed options (`add_options`) describe."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
