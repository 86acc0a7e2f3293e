"""`python -m offline train`: train VECF on a split and save the run folder (offline.recommenders.vecf)."""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.data.indexed import index_split
from offline.data.split import read_split
from offline.features.regions import load_features
from offline.recommenders import vecf
from offline.recommenders.vecf import TrainConfig, VECFRecommender


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline train", description=vecf.__doc__)
    ap.add_argument("--dataset", required=True, type=Path, help="dataset folder (catalog.csv)")
    ap.add_argument("--split", required=True, type=Path, help="folder written by `offline split`")
    ap.add_argument("--features", required=True, type=Path, help="folder written by `offline features`")
    ap.add_argument("--out", required=True, type=Path, help="run folder")
    ap.add_argument("--config", type=Path, help="JSON with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")
    args = ap.parse_args(argv)
    config = TrainConfig.from_cli(args.config, args.set)
    features = load_features(args.features)
    data = index_split(read_split(args.split), features.item_ids)
    rec = VECFRecommender(config, features).fit(data)
    rec.save(args.out, data, args.features, args.dataset)
    print(f"train: best validation recall@{config.eval_k} {rec.best_validation:.4f}; run saved to {args.out}")
    return 0
