"""The whole offline path in one command: split -> features -> train (VECF and its ablations) ->
evaluate against baselines in the same run -> export.

    python -m offline pipeline --dataset synthetic --source DIR --workdir DIR

Leaves in the workdir: split/, features/, runs/<model>/, export/<version>/, metrics.json, metrics.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from offline.dataset import load_catalog, load_interactions
from offline.evaluate import KS, ExplanationTruth, rank_metrics
from offline.export import export
from offline.features import extract
from offline.recommender import Popularity, index_split
from offline.report import write_report
from offline.split import split_per_user, write_split
from offline.train import TrainConfig, VECFRecommender

DATASETS = ("synthetic",)


def ablations(config: TrainConfig) -> dict[str, TrainConfig]:
    """VECF and the paper's ablations, trained the same way: -att (uniform attention), -rev (beta 0)."""
    return {
        "vecf": config,
        "vecf_no_att": replace(config, use_attention=False),
        "vecf_no_rev": replace(config, beta=0.0),
    }


def run(dataset: str, source: Path, workdir: Path, config: TrainConfig, backbone: str = "random_cnn",
        models: tuple[str, ...] = ("vecf", "vecf_no_att", "vecf_no_rev"), progress: bool = True) -> dict:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    workdir.mkdir(parents=True, exist_ok=True)
    split = split_per_user(load_interactions(source))
    counts = write_split(split, workdir / "split")
    print(f"split: {counts}")
    catalog = load_catalog(source)
    features = extract(catalog, workdir / "features", backbone, progress=progress)
    data = index_split(split, features.item_ids)
    seen = data.seen(include_validation=True)
    truth = ExplanationTruth.load(source, data, features)  # None: the data has no planted truth

    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    pop = Popularity().fit(data)
    results["popularity"] = rank_metrics(pop, data.test, seen, KS) | {"train_seconds": time.perf_counter() - t0}
    for name, cfg in ablations(config).items():
        if name not in models:
            continue
        t0 = time.perf_counter()
        rec = VECFRecommender(cfg, features, name=name, progress=progress).fit(data)
        seconds = time.perf_counter() - t0
        rec.save(workdir / "runs" / name, data, workdir / "features", source)
        results[name] = rank_metrics(rec, data.test, seen, KS) | {
            "train_seconds": seconds, "epochs": len(rec.history), "best_validation_recall@10": rec.best_validation}
        if truth is not None:
            results[name] |= truth.evaluate(rec)
        print(f"{name}: recall@10 {results[name]['recall@10']:.4f} ndcg@10 {results[name]['ndcg@10']:.4f}"
              + (f" pointing {results[name]['pointing_game']:.3f}" if truth is not None else ""))
    metrics = {"dataset": dataset, "source": str(source), "num_items": data.num_items,
               "test_users": len(data.test), "config": config.__dict__, "models": results}
    final = export(workdir / "runs" / "vecf", workdir / "export")
    metrics["export"] = str(final)
    write_report(metrics, workdir)
    print(f"pipeline: metrics -> {workdir / 'metrics.json'}, {workdir / 'metrics.md'}; export -> {final}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline pipeline", description=__doc__)
    ap.add_argument("--dataset", required=True, choices=DATASETS)
    ap.add_argument("--source", required=True, type=Path)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--backbone", default="random_cnn")
    ap.add_argument("--config", type=Path, help="JSON with TrainConfig fields")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")
    ap.add_argument("--models", default="vecf,vecf_no_att,vecf_no_rev",
                    help="comma-separated subset of vecf,vecf_no_att,vecf_no_rev (vecf is always trained)")
    args = ap.parse_args(argv)
    config = TrainConfig.from_cli(args.config, args.set)
    models = tuple(dict.fromkeys(["vecf", *args.models.split(",")]))
    run(args.dataset, args.source, args.workdir, config, args.backbone, models)
    return 0
