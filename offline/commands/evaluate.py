"""`python -m offline evaluate`: rank a trained run's test split and write metrics.json / metrics.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from offline.data.indexed import index_split
from offline.data.split import read_split
from offline.evaluation.evaluate import KS, ExplanationTruth
from offline.evaluation.rank_eval import rank_metrics
from offline.evaluation.report import write_report
from offline.features.regions import load_features
from offline.recommenders.baselines.popularity import Popularity
from offline.recommenders.vecf import VECFRecommender


def main(argv: list[str] | None = None) -> int:
    """Evaluate a trained run on its test split (and planted explanations, where the data has them)."""
    ap = argparse.ArgumentParser(prog="python -m offline evaluate", description=main.__doc__)
    ap.add_argument("--run", required=True, type=Path, help="run folder written by `offline train`")
    ap.add_argument("--split", required=True, type=Path, help="folder written by `offline split`")
    ap.add_argument("--out", required=True, type=Path, help="folder for metrics.json and metrics.md")
    args = ap.parse_args(argv)
    run = json.loads((args.run / "run.json").read_text())
    features = load_features(run["features"])
    data = index_split(read_split(args.split), features.item_ids)
    seen = data.seen(include_validation=True)
    rec = VECFRecommender.load(args.run, features)
    results = {
        "popularity": rank_metrics(Popularity().fit(data), data.test, seen, KS),
        rec.name: rank_metrics(rec, data.test, seen, KS),
    }
    truth = ExplanationTruth.load(Path(run["dataset"]), data, features)
    if truth is not None:
        results[rec.name] |= truth.evaluate(rec)
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(
        {"dataset": run["dataset"], "num_items": data.num_items, "test_users": len(data.test), "models": results},
        args.out,
    )
    print(
        f"evaluate: {rec.name} recall@10 {results[rec.name]['recall@10']:.4f} "
        f"(popularity {results['popularity']['recall@10']:.4f}) -> {args.out / 'metrics.json'}"
    )
    return 0
