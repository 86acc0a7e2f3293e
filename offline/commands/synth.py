"""`python -m offline synth`: write a synthetic shop (offline.data.synth) to a folder."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from offline.data import synth
from offline.data.dataset import GARMENTS_FILE, GROUND_TRUTH_FILE
from offline.data.options import add_options, from_args
from offline.data.synth import CONFIG_FILE, IMAGES_DIR, USERS_FILE, SynthConfig, generate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m offline synth",
        description=synth.__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    add_options(parser, SynthConfig)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="processes rendering images (1 = in this process)",
    )
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="skip image rendering (timing/debugging only: the folder is then incomplete)",
    )
    return parser


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = from_args(SynthConfig, args)
    try:
        cfg.validate()
    except ValueError as error:
        print(f"synth: {error}")
        return 2
    s = generate(cfg, args.out, workers=args.workers, images=not args.no_images)
    out: Path = args.out
    print(
        f"synth: {s.users:,} users, {s.items:,} items, {s.interactions:,} interactions "
        f"({s.from_preferences / max(s.interactions, 1):.0%} preference-driven), "
        f"{s.ground_truth_pairs:,} ground-truth pairs; sampling and tables {s.seconds_sampling:.1f} s"
    )
    if args.no_images:
        print("  images: skipped (--no-images); catalog.csv points at files that do not exist")
    else:
        print(
            f"  images: {s.items:,} JPEG {cfg.width}x{cfg.height} in {out / IMAGES_DIR} "
            f"({s.image_bytes / 1e6:.1f} MB) in {s.seconds_images:.1f} s with {args.workers} worker(s)"
        )
    files = ("catalog.csv", "interactions.csv", GROUND_TRUTH_FILE, USERS_FILE, GARMENTS_FILE, CONFIG_FILE)
    print(f"  wrote to {out}: " + ", ".join(f"{name} ({_size(out / name)})" for name in files))
    return 0
