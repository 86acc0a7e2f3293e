"""`python -m offline split`: split a dataset's interactions per user by time (offline.data.split)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.data import split
from offline.data.dataset import load_interactions
from offline.data.split import split_per_user, write_split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline split", description=split.__doc__)
    ap.add_argument("--source", required=True, type=Path, help="dataset folder (holds interactions.csv)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    args = ap.parse_args(argv)
    counts = write_split(
        split_per_user(load_interactions(args.source), args.val_fraction, args.test_fraction), args.out
    )
    print(f"split {sum(counts.values())} interactions into {args.out}: {counts}")
    return 0
