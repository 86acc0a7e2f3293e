"""`python -m offline pipeline`: split -> features -> train -> evaluate against baselines -> export
(offline.pipeline)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

from offline import pipeline
from offline.data.prepare.records import PrepareError
from offline.pipeline import DATASETS, DEFAULT_BACKBONE, REAL_BASE, REAL_GRID, run
from offline.recommenders.vecf import TrainConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m offline pipeline",
        description=pipeline.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--dataset",
        default="shop",
        choices=DATASETS,
        help="shop (default): interactions.csv + catalog.csv in the documented format; hm: H&M's files",
    )
    ap.add_argument("--source", required=True, type=Path)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--backbone", help=f"default: {DEFAULT_BACKBONE}")
    ap.add_argument("--config", type=Path, help="JSON with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")
    ap.add_argument(
        "--models",
        default=None,
        help="comma-separated models to train besides vecf (synthetic: vecf_no_att,vecf_no_rev; "
        "real data: vecf_no_att,vecf_no_text,vecf_popularity_negatives)",
    )
    ap.add_argument("--grid", type=Path, help="real data: JSON list of config overrides to choose from on validation")
    ap.add_argument("--weeks", type=int, default=16, help="real data: the test window's length (the forecast horizon)")
    ap.add_argument(
        "--validation-weeks",
        type=int,
        help="real data: the validation window's length, before the test's (default: --weeks)",
    )
    ap.add_argument(
        "--end",
        type=day,
        help="real data: the test window ends before this day, YYYY-MM-DD (default: after the last interaction)",
    )
    args = ap.parse_args(argv)
    real = args.dataset != "synthetic"
    config = TrainConfig.from_cli(args.config, args.set, REAL_BASE if real else None)
    default_models = "vecf_no_att,vecf_no_text,vecf_popularity_negatives" if real else "vecf_no_att,vecf_no_rev"
    models = tuple(dict.fromkeys(["vecf", *(args.models or default_models).split(",")]))
    grid = json.loads(args.grid.read_text()) if args.grid else list(REAL_GRID)
    try:
        run(
            args.dataset,
            args.source,
            args.workdir,
            config,
            args.backbone,
            models,
            grid=grid,
            weeks=args.weeks,
            validation_weeks=args.validation_weeks,
            end=args.end,
        )
    except PrepareError as e:  # the source's files: one line naming the file (and column) to fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def day(text: str) -> int:
    """'2024-03-01' -> unix seconds at 00:00 UTC."""
    try:
        return int(datetime.combine(date.fromisoformat(text), time(), UTC).timestamp())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD day: {text!r}") from None
