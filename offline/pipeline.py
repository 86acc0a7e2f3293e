"""The whole offline path in one command: split -> features -> train (VECF and its ablations) ->
evaluate against baselines in the same run -> export.

    python -m offline pipeline --dataset synthetic --source DIR --workdir DIR

Leaves in the workdir: split/, features/, runs/<model>/, export/<version>/, metrics.json, metrics.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from offline.dataset import GROUND_TRUTH_FILE, load_catalog, load_interactions
from offline.evaluate import MASK_COVERAGE, explanation_metrics, ground_truth_masks, rank_metrics
from offline.export import export
from offline.features import extract
from offline.recommender import IndexedData, Popularity, index_split
from offline.split import split_per_user, write_split
from offline.train import TrainConfig, VECFRecommender, parse_overrides

DATASETS = ("synthetic",)
KS = (5, 10, 20)


def ablations(config: TrainConfig) -> dict[str, TrainConfig]:
    """VECF and the paper's ablations, trained the same way: -att (uniform attention), -rev (beta 0)."""
    return {
        "vecf": config,
        "vecf_no_att": replace(config, use_attention=False),
        "vecf_no_rev": replace(config, beta=0.0),
    }


def explanation_pairs(dataset_dir: Path, data: IndexedData) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Test pairs whose item carries one of the user's planted (part, attribute) preferences."""
    from offline.ground_truth import load_ground_truth

    truth = load_ground_truth(dataset_dir)
    users, items, pairs = [], [], []
    for u, relevant in sorted(data.test.items()):
        for i in sorted(relevant):
            key = (data.user_ids[u], data.item_ids[i])
            if key in truth:
                users.append(u), items.append(i), pairs.append(key)
    return np.array(users, dtype=np.int32), np.array(items, dtype=np.int32), pairs


def suffixed(metrics: dict, suffix: str) -> dict:
    """Name metrics of one mask variant: pointing_game -> pointing_game_core, x_uniform -> x_core_uniform."""
    out = {}
    for key, value in metrics.items():
        if key == "pairs":
            out[key] = value
        elif key.endswith("_uniform"):
            out[key.removesuffix("_uniform") + suffix + "_uniform"] = value
        else:
            out[key + suffix] = value
    return out


def write_report(metrics: dict, workdir: Path) -> None:
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    models = metrics["models"]
    cols = [f"{m}@{k}" for k in (10,) for m in ("recall", "ndcg", "hr", "precision", "f1")] + ["recall@20"]
    lines = [f"# Evaluation: {metrics['dataset']}", "",
             f"Test users: {metrics['test_users']}; catalog: {metrics['num_items']} items; "
             f"every item a candidate, training items removed from each user's ranking.", "",
             "| model | " + " | ".join(cols) + " | train s |", "|---" * (len(cols) + 2) + "|"]
    for name, m in models.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + f" | {m.get('train_seconds', 0):.0f} |")
    if any("pointing_game" in m for m in models.values()):
        lines += ["", "## Explanations (planted preferences; uniform attention as the baseline)", "",
                  "Mask: the grid cells the liked part touches; *core*: cells it covers at least 20% of.", "",
                  "| model | pointing game | uniform | mass in mask | uniform | pointing (core) | uniform "
                  "| mass (core) | uniform | pairs |", "|---" * 10 + "|"]
        for name, m in models.items():
            if "pointing_game" in m:
                cells = [m[f"{k}{s}{u}"] for s in ("", "_core") for k in ("pointing_game", "attention_mass_in_mask")
                         for u in ("", "_uniform")]
                lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {m['pairs']} |")
    (workdir / "metrics.md").write_text("\n".join(lines) + "\n")


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
    has_truth = (source / GROUND_TRUTH_FILE).exists()
    if has_truth:
        eu, ei, pairs = explanation_pairs(source, data)
        item_index = {i: k for k, i in enumerate(data.item_ids)}
        masks = {suffix: ground_truth_masks(source, pairs, item_index, features.boxes, features.grid, coverage)
                 for suffix, coverage in MASK_COVERAGE.items()}

    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    pop = Popularity().fit(data)
    results["popularity"] = rank_metrics(pop, data.test, seen, KS) | {"train_seconds": time.perf_counter() - t0}
    trained: dict[str, VECFRecommender] = {}
    for name, cfg in ablations(config).items():
        if name not in models:
            continue
        t0 = time.perf_counter()
        rec = VECFRecommender(cfg, features, name=name, progress=progress).fit(data)
        seconds = time.perf_counter() - t0
        rec.save(workdir / "runs" / name, data, workdir / "features", source)
        trained[name] = rec
        results[name] = rank_metrics(rec, data.test, seen, KS) | {
            "train_seconds": seconds, "epochs": len(rec.history), "best_validation_recall@10": rec.best_validation}
        if has_truth:
            for suffix, mask in masks.items():
                results[name] |= suffixed(explanation_metrics(rec, eu, ei, mask), suffix)
        print(f"{name}: recall@10 {results[name]['recall@10']:.4f} ndcg@10 {results[name]['ndcg@10']:.4f}"
              + (f" pointing {results[name]['pointing_game']:.3f}" if has_truth else ""))
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
    config = TrainConfig.from_dict({**(json.loads(args.config.read_text()) if args.config else {}),
                                    **parse_overrides(args.set)})
    models = tuple(dict.fromkeys(["vecf", *args.models.split(",")]))
    run(args.dataset, args.source, args.workdir, config, args.backbone, models)
    return 0
