"""`python -m offline features`: region features for every catalog photo (offline.features.regions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.data.dataset import load_catalog
from offline.features import regions
from offline.features.regions import extract, parse_shard


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m offline features",
        description=regions.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--source", required=True, type=Path, help="dataset folder (holds catalog.csv)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument(
        "--backbone",
        default="random_cnn",
        help="random_cnn (no weights), efficientnet_lite0, efficientnet_lite0_stage3 and "
        "efficientnet_lite0_dual (ImageNet, offline), vgg19, resnet50",
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4, help="image decoding threads")
    ap.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="extract only part I of N (0-based), e.g. one per machine; merge by running without it",
    )
    args = ap.parse_args(argv)
    extract(load_catalog(args.source), args.out, args.backbone, args.batch_size, args.workers, shard=args.shard)
    return 0
