"""`python -m offline plant`: paint marks on real photos and plant shoppers who like them (offline.data.plant)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from offline.data import plant
from offline.data.dataset import CATALOG_FILE, GARMENTS_FILE, GROUND_TRUTH_FILE, INTERACTIONS_FILE
from offline.data.options import add_options, from_args
from offline.data.plant import CONFIG_FILE, USERS_FILE, PlantConfig, generate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m offline plant",
        description=plant.__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--photos",
        required=True,
        type=Path,
        help="catalog folder: catalog.csv with item_id,image (internal) or article_id,image (H&M)",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    add_options(parser, PlantConfig)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = from_args(PlantConfig, args)
    try:
        cfg.validate()
        s = generate(cfg, args.photos, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as error:
        print(f"plant: {error}")
        return 2
    print(
        f"plant: {s.items:,} photos painted ({s.marked:,} with marks; {s.skipped:,} skipped: no clean "
        f"garment mask), {s.users:,} users, {s.interactions:,} interactions "
        f"({s.from_preferences / max(s.interactions, 1):.0%} preference-driven), "
        f"{s.ground_truth_pairs:,} ground-truth pairs in {s.seconds:.1f} s"
    )
    files = (CATALOG_FILE, INTERACTIONS_FILE, GROUND_TRUTH_FILE, USERS_FILE, GARMENTS_FILE, CONFIG_FILE)
    print(f"  wrote to {args.out}: images/, masks/, " + ", ".join(files))
    return 0
