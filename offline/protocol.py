"""Real purchases (H&M, Amazon): settings chosen on validation, quality reported on test, the
deployed model trained on everything. Nothing here ever looks at test data to choose anything.

With `offline.data.split.split_time_windows` (two back-to-back windows of the forecast horizon):
1. selection: every candidate config is fitted on the selection split's training part with early
   stopping on its validation window (Recall@K over the whole catalog, nothing masked: repeat
   purchases count); the bias of items nobody has bought yet, the weight of the repeat-purchase
   boost (offline.recommenders.repeats) and the new-item slots (offline.recommenders.newitems) are
   then chosen on the same window without retraining. The best (config, epochs, cold-item bias,
   repeat weight, slots) wins.
2. evaluation: that config, trained for that many epochs on everything before the test window,
   ranks the test window; so do the ablations and the popularity baseline. These are the figures.
3. final: the same config trained on everything: the run that is exported and deployed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from offline.data.dataset import Catalog, Interactions
from offline.data.indexed import IndexedData, index_split
from offline.data.split import TimeWindows
from offline.evaluation.explanations import evaluate_explanations
from offline.evaluation.interface import Recommender
from offline.evaluation.quality import UserEvaluation, cold_items, evaluate_users, paired_against, recall_curve
from offline.features.regions import RegionFeatures
from offline.recommenders.baselines.popularity import Popularity
from offline.recommenders.newitems import NEW_ITEM_EVERY
from offline.recommenders.repeats import REPEAT_WEIGHTS
from offline.recommenders.vecf import TrainConfig, VECFRecommender

EVAL_KS = (10, 20, 50)
SELECT_METRIC = "recall@50"  # the benchmark's headline: a shop shows a few dozen items per visit
COLD_BIAS_QUANTILES = (None, 0.0, 0.25, 0.5, 0.75, 0.9, 0.97)


def with_item_text(data: Interactions, catalog: Catalog, column: str = "description") -> Interactions:
    """Where an interaction has no review, use its item's text (H&M has no reviews; its product
    descriptions are the only text: an item-level, weaker signal for the review decoder)."""
    if column not in catalog.attributes:
        return data
    text = dict(zip(catalog.item_ids, catalog.attributes[column]))
    reviews = np.array([r if r else text.get(i, "") for r, i in zip(data.reviews, data.item_ids)], dtype=object)
    return Interactions(data.user_ids, data.item_ids, data.timestamps, reviews)


def evaluate(model: Recommender, data: IndexedData, relevant: dict[int, set[int]]) -> UserEvaluation:
    """Whole catalog ranked, nothing masked; recall also on items with / without training purchases."""
    cold = cold_items(data)
    return evaluate_users(model, relevant, EVAL_KS, groups={"cold": cold, "warm": ~cold})


class Precomputed:
    """A Recommender over a fixed score matrix for a fixed set of users."""

    name = "precomputed"

    def __init__(self, users: np.ndarray, scores: np.ndarray):
        self.row = {int(u): r for r, u in enumerate(users)}
        self.scores = scores

    def fit(self, data: IndexedData) -> Precomputed:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[[self.row[int(u)] for u in users]]


def test_row(model: Recommender, data: IndexedData, seconds: float) -> dict:
    """A model's line in the report: metric means with bootstrap intervals, training time,
    Recall@K for K = 1..100 (the plot) and the per-user values paired comparisons need (`paired_against`)."""
    ev = evaluate(model, data, data.test)
    ks = range(1, min(100, ev.ranked.shape[1]) + 1)  # a catalog may hold fewer than 100 items
    return ev.summary() | {
        "train_seconds": seconds,
        "recall_curve": recall_curve(ev.ranked, data.test, ks).tolist(),
        "per_user": ev.per_user(),
    }


def catalog_attributes(catalog: Catalog, item_ids: list[str]) -> dict[str, list[str]]:
    """The catalog's attribute columns, checked to be in `item_ids` order (the new-item slots read them)."""
    if catalog.item_ids != list(item_ids):
        raise ValueError("the catalog and the feature table disagree on item order")
    return catalog.attributes


@dataclass(frozen=True)
class Choice:
    config: TrainConfig  # epochs = the best validation epoch, cold_bias_quantile and repeat_weight chosen
    validation: dict[str, float]
    trials: list[dict]


def select(
    candidates: Sequence[TrainConfig],
    data: IndexedData,
    features: RegionFeatures,
    progress: bool = True,
    item_attributes: dict[str, list[str]] | None = None,
) -> Choice:
    """Fit every candidate with early stopping on `data.validation`; pick the best on SELECT_METRIC."""
    if not data.validation:
        raise ValueError("the selection split has no validation users")
    trials, best = [], None
    users = np.array(sorted(data.validation), dtype=np.int64)
    for n, config in enumerate(candidates):
        t0 = time.perf_counter()
        rec = VECFRecommender(
            config, features, name=f"trial{n}", progress=progress, item_attributes=item_attributes
        ).fit(data)
        rec.set_cold_bias(None)
        base = rec.raw_score(users)  # [U, N], scored once: the cold-item bias only shifts some columns
        # With slots on, new items rank only in their slots: the cold-item bias no longer matters.
        settings = [(q, 0) for q in COLD_BIAS_QUANTILES] + [(None, e) for e in NEW_ITEM_EVERY if e]
        for quantile, every in settings:
            rec.set_cold_bias(quantile)
            rec.set_new_item_every(every)
            shifted = base + (np.asarray(rec.model.item_bias) - rec.trained_bias)[None, :]
            for weight in REPEAT_WEIGHTS:  # and the repeat boost only some cells
                rec.set_repeat_weight(weight)
                scores = rec.ranked_scores(shifted, users)  # as the export would serve them
                metrics = evaluate(Precomputed(users, scores), data, data.validation).means()
                trial = {
                    "trial": n,
                    "config": asdict(rec.config),
                    "best_epoch": rec.best_epoch,
                    "fit_seconds": time.perf_counter() - t0,
                    "validation": metrics,
                }
                trials.append(trial)
                if best is None or metrics[SELECT_METRIC] > best["validation"][SELECT_METRIC]:
                    best = trial
        print(
            f"select: trial {n} best epoch {rec.best_epoch}: validation {SELECT_METRIC} "
            f"{max(t['validation'][SELECT_METRIC] for t in trials if t['trial'] == n):.4f}"
        )
    assert best is not None
    chosen = TrainConfig.from_dict({**best["config"], "epochs": best["best_epoch"]})
    return Choice(chosen, best["validation"], trials)


def variants(config: TrainConfig) -> dict[str, TrainConfig]:
    """VECF, its paper ablations, and the other negative sampler (the imbalance question)."""
    other = "popularity" if config.negatives == "uniform" else "uniform"
    return {
        "vecf": config,
        "vecf_no_att": replace(config, use_attention=False),
        "vecf_no_text": replace(config, beta=0.0),
        f"vecf_{other}_negatives": replace(config, negatives=other),
    }


def fit_fixed(
    config: TrainConfig,
    data: IndexedData,
    features: RegionFeatures,
    name: str,
    progress: bool = True,
    item_attributes: dict[str, list[str]] | None = None,
) -> tuple[VECFRecommender, float]:
    """Train for exactly config.epochs (no validation), keep the chosen cold-item bias."""
    t0 = time.perf_counter()
    rec = VECFRecommender(
        replace(config, patience=config.epochs + 1),
        features,
        name=name,
        progress=progress,
        item_attributes=item_attributes,
    )
    return rec.fit(data), time.perf_counter() - t0


def run(
    windows: TimeWindows,
    features: RegionFeatures,
    features_folder: Path,
    candidates: Sequence[TrainConfig],
    workdir: Path,
    dataset_dir: Path,
    models: Sequence[str] = ("vecf",),
    progress: bool = True,
    attributes: dict[str, list[str]] | None = None,
    dataset_image: Callable[[int], Path] | None = None,
) -> dict:
    """Selection, evaluation and the final fit; returns the metrics and leaves runs/final (to export) and
    runs/evaluation (VECF fitted before the test window).
    `attributes`: the catalog's attribute columns in feature-table order (`catalog_attributes`);
    `dataset_image(row)`: the photo of feature-table row `row`, for the explanation metrics."""
    selection = index_split(windows.selection, features.item_ids)
    choice = select(candidates, selection, features, progress, attributes)
    print(f"select: chose {json.dumps(asdict(choice.config))}")

    evaluation = index_split(windows.evaluation, features.item_ids)
    results: dict[str, dict] = {}
    explained: dict[str, VECFRecommender] = {}  # the fits whose maps offline.evaluation.explanations measures
    t0 = time.perf_counter()
    pop = Popularity().fit(evaluation)
    results["popularity"] = test_row(pop, evaluation, time.perf_counter() - t0)
    for name, config in variants(choice.config).items():
        if name not in models:
            continue
        rec, seconds = fit_fixed(config, evaluation, features, name, progress, attributes)
        results[name] = test_row(rec, evaluation, seconds)
        print(
            f"evaluate: {name} test recall@50 {results[name]['recall@50']:.4f} "
            f"(popularity {results['popularity']['recall@50']:.4f})"
        )
        if name in ("vecf", "vecf_no_att"):
            explained[name] = rec
        if name != "vecf":
            continue
        # kept for what bench-quality measures beyond the table (shelves, "because you bought")
        rec.save(workdir / "runs" / "evaluation", evaluation, features_folder, dataset_dir)
        # What the slots and the boost each add: the same fit without one of them.
        if config.new_item_every:
            rec.set_new_item_every(0)
            results["vecf_no_new_slots"] = test_row(rec, evaluation, seconds)
            rec.set_new_item_every(config.new_item_every)
            print(f"evaluate: vecf_no_new_slots test recall@50 {results['vecf_no_new_slots']['recall@50']:.4f}")
        if config.repeat_weight > 0:
            rec.set_repeat_weight(0.0)
            results["vecf_no_repeat"] = test_row(rec, evaluation, seconds)
            rec.set_repeat_weight(config.repeat_weight)  # the explanations sample what VECF as chosen recommends
            print(f"evaluate: vecf_no_repeat test recall@50 {results['vecf_no_repeat']['recall@50']:.4f}")

    explanations = {}
    if "vecf" in explained and dataset_image is not None:
        explanations = evaluate_explanations(
            explained,
            evaluation.train_users,
            dataset_image,
            features_folder,
            features,
            sheet=workdir / "explanations.png",
            names=evaluation.user_ids,
            new=cold_items(evaluation),
        )
    final = index_split(windows.final, features.item_ids)
    rec, seconds = fit_fixed(choice.config, final, features, "vecf", progress, attributes)
    rec.save(workdir / "runs" / "final", final, features_folder, dataset_dir)
    return {
        "windows": {"val_start": windows.val_start, "test_start": windows.test_start, "end": windows.end},
        "split": {
            "selection_train": len(selection.train_users),
            "validation_users": len(selection.validation),
            "evaluation_train": len(evaluation.train_users),
            "test_users": len(evaluation.test),
            "final_train": len(final.train_users),
        },
        "chosen": asdict(choice.config),
        "chosen_validation": choice.validation,
        "selection": choice.trials,
        "final_train_seconds": seconds,
        "models": results,
        "explanations": explanations,
        "test_users": len(evaluation.test),
        "paired": {f"vecf - {name}": d for name, d in paired_against(results["vecf"], results).items()}
        if "vecf" in results
        else {},
        "num_items": evaluation.num_items,
    }
