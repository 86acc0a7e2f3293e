"""`python -m offline recommend`: top-k recommendations for a file of users, from an export (offline.serving.batch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.serving import batch
from offline.serving.batch import read_user_ids, recommend


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m offline recommend",
        description=batch.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", required=True, type=Path, help="export base folder or one version folder")
    ap.add_argument("--users", required=True, type=Path, help="file with one user id per line")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", required=True, type=Path, help="CSV to write: user_id,rank,item_id,score")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    counts = recommend(args.model, read_user_ids(args.users), args.k, args.out, args.batch_size)
    print(
        f"recommend: {counts['rows']} rows for {counts['users']} users ({counts['unknown']} unknown to the "
        f"model got the popularity ranking) -> {args.out}"
    )
    return 0
