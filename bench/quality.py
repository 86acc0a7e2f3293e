"""`make bench-quality`: VECF against the baselines on real H&M purchases, one split, one run.

    python -m bench.quality [--source ../shared/data/hm] [--workdir bench/work/hm] [--out bench/results]

1. `offline pipeline --dataset hm` (VECF's settings chosen on the validation window; VECF, its
   ablations and popularity scored on the test window; the final model exported).
2. Every baseline on the same windows: each candidate setting fitted on the selection split and
   scored on its validation window; the best refitted on everything before the test window and
   scored on it. Visual baselines get the same EfficientNet-Lite0 features as VECF (region mean).
3. VECF refitted on the same windows with the seeds of `--seeds` other than the one the pipeline chose
   on validation (same settings, nothing chosen): its mean over all of them is a row of its own, the
   per-seed figures a line under the table. The gap between the chosen seed and that mean is what
   choosing the seed on validation earned on the test.
4. One table (JSON + Markdown) with 95% user-level bootstrap intervals, and a plot of Recall@K.
5. The pipeline's explanation metrics (offline.evaluation.explanations): how concentrated, personal and faithful
   the maps of VECF and VECF(-att) are, beside an item-mean map and a centre prior.
6. Planted marks on the same H&M photos (`offline plant`, `--plant-seed`): the synthetic pipeline with
   H&M's backbone and VECF's attention settings; the pointing game beside uniform attention's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.docs import is_default_results, provenance
from bench.docs import update as update_docs
from offline.data.dataset import load_catalog, load_interactions
from offline.data.indexed import index_split
from offline.data.split import split_time_windows
from offline.evaluation.explanations import explanation_section
from offline.evaluation.quality import markdown_table, paired_against, paired_table, plot_recall_curves
from offline.features.regions import load_features
from offline.pipeline import REAL_BASE, REAL_GRID, run
from offline.protocol import SELECT_METRIC, catalog_attributes, evaluate, fit_fixed, test_row, with_item_text
from offline.recommenders.baselines import VISUAL, build_baseline
from offline.recommenders.vecf import TrainConfig, VECFRecommender

SHARED_HM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"

# Candidate settings per baseline, chosen on validation like VECF's.
BASELINE_GRID: dict[str, list[dict]] = {
    "popularity_buyers": [{}],
    "recent_popularity": [{"window_days": d} for d in (7, 14, 28, 56)],
    "repurchase": [{"half_life_days": h} for h in (14, 30, 90)],
    "als": [{"factors": 32, "reg": 0.1}, {"factors": 64, "reg": 1.0}],
    "item_knn": [{"half_life_days": None}, {"half_life_days": 60.0}],
    "visual_profile": [{"half_life_days": None}, {"half_life_days": 60.0}],
    "cornac_bpr": [{}],
    "cornac_vbpr": [{}],
    # Cornac's counterparts of our item_knn and als, run beside them so the table shows which to keep.
    "cornac_item_knn": [{"k": k} for k in (20, 50, 200)],
    "cornac_wmf": [{"k": 32, "max_iter": 50}, {"k": 64, "max_iter": 100, "lambda_u": 0.1, "lambda_v": 0.1}],
}
SEEDS = (0, 1, 2, 3)  # VECF shown with each: the chosen seed from the pipeline, the others refitted
# shown beside REAL_BASE's keys
CHOSEN = ("half_life_days", "cold_bias_quantile", "repeat_weight", "new_item_every", "negatives")
COLUMNS = (
    "hr@10",
    "recall@10",
    "ndcg@10",
    "hr@50",
    "recall@50",
    "ndcg@50",
    "recall_warm@50",
    "recall_cold@50",
    "train_seconds",
)


def _splits(workdir: Path, weeks: int):
    """(features, selection split, evaluation split, catalog attributes) as the pipeline left them in
    `workdir`."""
    data_dir = workdir / "data"
    catalog = load_catalog(data_dir)
    windows = split_time_windows(with_item_text(load_interactions(data_dir), catalog), weeks)
    features = load_features(workdir / "features")
    return (
        features,
        index_split(windows.selection, features.item_ids),
        index_split(windows.evaluation, features.item_ids),
        catalog_attributes(catalog, features.item_ids),
    )


def seed_rows(
    features, evaluation, chosen: dict, seeds: Sequence[int], attributes: dict[str, list[str]] | None = None
) -> dict[int, dict]:
    """VECF with the chosen settings retrained on the evaluation split with other seeds: test rows
    (boost as chosen, and the same fit without it) that show how much of VECF's figure is its seed.
    Nothing is chosen here."""
    rows = {}
    for seed in seeds:
        rec, seconds = fit_fixed(
            replace(TrainConfig.from_dict(chosen), seed=seed),
            evaluation,
            features,
            f"vecf seed {seed}",
            item_attributes=attributes,
        )
        boosted = test_row(rec, evaluation, seconds)
        rec.set_repeat_weight(0.0)
        rows[seed] = boosted | {"without_repeat_boost": test_row(rec, evaluation, seconds)}
        print(
            f"bench: vecf seed {seed}: test recall@50 {boosted['recall@50']:.4f} "
            f"(without the boost {rows[seed]['without_repeat_boost']['recall@50']:.4f})"
        )
    return rows


def mean_row(rows: Sequence[dict]) -> dict:
    """Per-key mean of the metric rows (no intervals: those are per fit), recall curves averaged too."""
    keys = [k for k, v in rows[0].items() if isinstance(v, float) and not k.endswith(("_low", "_high"))]
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return out | {"recall_curve": np.mean([r["recall_curve"] for r in rows], axis=0).tolist()}


def seed_line(by_seed: dict[int, dict]) -> str:
    """One sentence: VECF's test Recall@50 per seed, with and without the repeat boost."""

    def fmt(row: dict | None) -> str:
        return f"{row['recall@50']:.4f}" if row else "-"

    parts = [
        f"seed {s}: {fmt(r)} (without the boost {fmt(r.get('without_repeat_boost'))})"
        for s, r in sorted(by_seed.items())
    ]
    return "VECF test Recall@50 by training seed (the same settings): " + "; ".join(parts) + "\n"


FOLD_IN_FOLDS = 5  # each fifth of the test customers left out of training once, and folded in
FOLD_IN_SEED = 0


def fold_in_rows(features, evaluation, chosen: dict, models: dict, attributes, folds: int) -> dict:
    """VECF (the chosen settings, nothing chosen here) fitted `folds` times, each time without one of
    `customer_folds`, whose customers are folded in from their purchases before the test window and
    scored on it. Every test customer is folded in once; paired on all of them with their figures from
    the pipeline's VECF (trained with them) and popularity's."""
    from offline.evaluation.fold_in import FoldedIn, customer_folds, histories, without_users
    from offline.evaluation.quality import paired_difference

    per_user: dict[int, float] = {}
    parts = []
    for n, users in enumerate(customer_folds(evaluation, folds, FOLD_IN_SEED)):
        rec, seconds = fit_fixed(
            TrainConfig.from_dict(chosen),
            without_users(evaluation, users),
            features,
            f"vecf without fold {n}",
            item_attributes=attributes,
        )
        t0 = time.perf_counter()
        folded = evaluate(
            FoldedIn(rec, histories(evaluation, users), users), evaluation, {u: evaluation.test[u] for u in users}
        )
        per_user |= dict(zip(folded.users.tolist(), folded.values["recall@50"].tolist()))
        parts.append(
            {
                "customers": len(users),
                "train_seconds": seconds,
                "fold_in_and_rank_seconds": time.perf_counter() - t0,
                "folded_in": float(np.mean(folded.values["recall@50"])),
            }
        )
        print(f"bench: fold-in {n}: {len(users)} customers, recall@50 folded in {parts[-1]['folded_in']:.4f}")
    users = sorted(per_user)
    mine = np.array([per_user[u] for u in users])
    row: dict = {"folds": parts, "customers": len(users), "folded_in": float(np.mean(mine))}
    for name in ("vecf", "popularity"):
        theirs = models[name]["per_user"]
        where = {u: k for k, u in enumerate(theirs["users"])}
        values = np.asarray(theirs["recall@50"])[[where[u] for u in users]]
        row[name] = float(np.mean(values))
        row[f"folded_in - {name}"] = paired_difference(mine, values)
    row["ratio_to_vecf"] = row["folded_in"] / row["vecf"] if row["vecf"] else float("nan")
    print(
        f"bench: fold-in: {len(users)} customers, recall@50 folded in {row['folded_in']:.4f}, trained with them "
        f"{row['vecf']:.4f} ({row['ratio_to_vecf']:.0%}), popularity {row['popularity']:.4f}"
    )
    return row


def fold_in_lines(row: dict | None) -> list[str]:
    if not row:
        return []
    pop, own = row["folded_in - popularity"], row["folded_in - vecf"]
    seconds = sum(f["fold_in_and_rank_seconds"] for f in row["folds"])
    return [
        "",
        "## Shoppers the model never saw",
        "",
        f"The test customers in {len(row['folds'])} random parts; VECF refitted with the chosen settings without "
        "each part in turn, whose customers are then folded in from their purchases before the test window as "
        "the export's `history_embedding` signature does (`model/foldin.py`) and scored on the test window. Every "
        "test customer is folded in once. Beside them, the same customers' Recall@50 from the VECF trained with "
        "them and from popularity; differences paired on the same customers (95% bootstrap interval).",
        "",
        markdown_table(
            [
                {
                    "customers": row["customers"],
                    "folded_in": row["folded_in"],
                    "vecf": row["vecf"],
                    "ratio": f"{row['ratio_to_vecf']:.2f}",
                    "pop": difference_cell(pop),
                    "own": difference_cell(own),
                }
            ],
            headers=[
                "customers",
                "folded in",
                "trained with them",
                "ratio",
                "folded in - popularity",
                "folded in - trained",
            ],
        ),
        "Folded in per part: "
        + ", ".join(f"{f['folded_in']:.4f} ({f['customers']} customers)" for f in row["folds"])
        + f"; folding in and ranking took {seconds / row['customers'] * 1000:.0f} ms per customer offline.",
    ]


def shelf_lines(shelves: dict) -> list[str]:
    if not shelves:
        return []
    lines = [
        "",
        "## Shelves",
        "",
        "Each shelf's own Recall@K over the test purchases it could hold (`buy_again`: re-buys; `for_you`: the "
        "rest; `new_for_you`: items nobody had bought before the test window), for the customers who made such a "
        "purchase, served as the gateway serves `/recommend?shelf=...`. Reference: the same part of the catalog "
        "ranked simply (the history newest first; the most bought items, less the customer's own; the new items "
        "in catalog order); the difference is paired on the same customers.",
        "",
    ]
    rows = [
        {
            "shelf": name,
            "customers": r["customers"],
            **{f"recall@{k}": r[f"recall@{k}"]["mean"] for k in (10, 50)},
            **{f"recall@{k}_{end}": r[f"recall@{k}"][end] for k in (10, 50) for end in ("low", "high")},
            "reference@10": r["reference_recall@10"],
            "reference@50": r["reference_recall@50"],
            "difference": difference_cell(r["shelf - reference @50"]),
        }
        for name, r in shelves.items()
    ]
    columns = ["shelf", "customers", "recall@10", "recall@50", "reference@10", "reference@50", "difference"]
    headers = [*columns[:-1], "shelf - reference @50"]
    return [*lines, markdown_table(rows, columns, intervals=True, headers=headers)]


def because_row(rec, evaluation, attributes) -> dict:
    """ "Because you bought" on the test customers' served top 10: the named item against chance, for the
    served region vectors and for the photo's mean vector (the map left out)."""
    from offline.evaluation.because import SERVED, agreement, named_items

    users = np.array(sorted(evaluation.test), dtype=np.int64)
    out = {}
    for kind in (SERVED, "item"):
        out[kind] = agreement(*named_items(rec, users, 10, kind), attributes)
    return out


def because_lines(row: dict | None) -> list[str]:
    if not row:
        return []
    from offline.evaluation.because import MATCH_COLUMNS, SERVED

    lines = [
        "",
        '## "Because you bought"',
        "",
        f"For each test customer's top 10, the history item named first: how often it shares the recommended "
        f"item's {' or '.join(MATCH_COLUMNS)}, against a history item drawn at random (chance); pairs where the "
        "catalog describes both. Served: attended-region vectors of the kind below; `item` compares the photos' "
        "mean vectors instead, the attention map left out.",
        "",
    ]
    rows = [
        {
            "vectors": f"{kind} (served)" if kind == SERVED else kind,
            "customers": r["customers"],
            "pairs": r["pairs"],
            "named": r["named"],
            "chance": r["chance"],
            "named - chance": difference_cell(r["named - chance"], 3),
        }
        for kind, r in row.items()
    ]
    return [*lines, markdown_table(rows, digits=3)]


def difference_cell(d: dict, digits: int = 4) -> str:
    """A paired difference (`paired_difference`) as "+d [low, high]"."""
    return f"{d['difference']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


PLANT = {"items": 2000, "users": 600}  # a few minutes on 2 cores; `offline plant` defaults otherwise


def planted_row(data_dir: Path, workdir: Path, seed: int) -> dict:
    """Plant marks on the prepared H&M photos in `data_dir`, then run the synthetic pipeline on them with
    the backbone and attention settings VECF uses on H&M -> VECF's and VECF(-att)'s rows (pointing game,
    recall) and their paired Recall@10 difference."""
    from offline.data.plant import PlantConfig, generate
    from offline.pipeline import DEFAULT_BACKBONE

    planted = workdir / "planted"
    summary = generate(PlantConfig(seed=seed, **PLANT), data_dir, planted / "data", progress=False)
    config = TrainConfig(**{k: REAL_BASE[k] for k in ("affinity", "attention_dim") if k in REAL_BASE})
    metrics = run(
        "synthetic",
        planted / "data",
        planted / "work",
        config,
        DEFAULT_BACKBONE["hm"],
        models=("vecf", "vecf_no_att"),
        progress=False,
    )
    return {
        "seed": seed,
        "photos": summary.items,
        "users": summary.users,
        "backbone": DEFAULT_BACKBONE["hm"],
        "models": {n: metrics["models"][n] for n in ("vecf", "vecf_no_att")},
        "paired": metrics.get("paired", {}),
    }


def planted_lines(row: dict) -> list[str]:
    """quality.md's lines for the planted-marks run."""
    table = [{"model": n, **m} for n, m in row["models"].items()]
    lines = [
        "",
        f"## Planted marks on {row['photos']} H&M photos (seed {row['seed']}, {row['users']} customers, "
        f"{row['backbone']} features)",
        "",
        markdown_table(
            table,
            [
                "model",
                "recall@10",
                "ndcg@10",
                "pointing_game",
                "pointing_game_uniform",
                "pointing_game_core",
                "attention_mass_in_mask",
                "pairs",
            ],
        ),
    ]
    if row["paired"]:
        lines += [
            "Paired, on the same customers (bootstrap interval, permutation p-value):",
            "",
            paired_table(row["paired"]),
        ]
    return lines


def run_baselines(features, selection, evaluation, names: list[str]) -> dict[str, dict]:
    """Each baseline: settings chosen on validation, figures on test (the pipeline's windows)."""
    results = {}
    for name in names:
        extra = {"features": features} if name in VISUAL else {}
        scored = []
        for params in BASELINE_GRID[name]:
            model = build_baseline(name, **params, **extra).fit(selection)
            scored.append((evaluate(model, selection, selection.validation).means()[SELECT_METRIC], params))
        val, params = max(scored, key=lambda pair: pair[0])
        t0 = time.perf_counter()
        model = build_baseline(name, **params, **extra).fit(evaluation)
        seconds = time.perf_counter() - t0
        results[name] = test_row(model, evaluation, seconds) | {"params": params, f"validation_{SELECT_METRIC}": val}
        print(
            f"bench: {name} {params}: validation {SELECT_METRIC} {val:.4f}, test {results[name]['recall@50']:.4f}"
            f" ({seconds:.1f} s)"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", type=Path, default=SHARED_HM, help="H&M folder (raw Kaggle layout or prepared)")
    ap.add_argument("--workdir", type=Path, default=Path("bench/work/hm"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--weeks", type=int, default=16)
    ap.add_argument("--baselines", default=",".join(BASELINE_GRID), help="comma-separated subset")
    ap.add_argument(
        "--seeds",
        default=",".join(map(str, SEEDS)),
        help="training seeds VECF is shown with, its settings as chosen; all but the pipeline's "
        "own are refitted (empty: none)",
    )
    ap.add_argument("--plant-seed", type=int, default=1, help="seed of the planted-marks run (-1: skip it)")
    ap.add_argument(
        "--fold-in-folds",
        type=int,
        default=FOLD_IN_FOLDS,
        help="parts of the test customers left out and folded in, one fit each (0: none)",
    )
    args = ap.parse_args(argv)
    if not args.source.exists():
        raise SystemExit(
            f"bench-quality: {args.source} does not exist: the H&M sample lives in ../shared/data/hm "
            "(or pass --source to a Kaggle download, see dataset.sh hm)"
        )
    metrics = run(
        "hm",
        args.source,
        args.workdir,
        TrainConfig.from_dict(REAL_BASE),
        grid=list(REAL_GRID),
        weeks=args.weeks,
        models=("vecf", "vecf_no_att", "vecf_no_text", "vecf_popularity_negatives"),
    )
    features, selection, evaluation, attributes = _splits(args.workdir, args.weeks)  # read once, for all below
    models = metrics["models"] | run_baselines(features, selection, evaluation, args.baselines.split(","))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    by_seed = {metrics["chosen"]["seed"]: models["vecf"] | {"without_repeat_boost": models.get("vecf_no_repeat")}}
    by_seed |= seed_rows(features, evaluation, metrics["chosen"], [s for s in seeds if s not in by_seed], attributes)
    if len(by_seed) > 1:
        models[f"vecf_mean_of_{len(by_seed)}_seeds"] = mean_row(list(by_seed.values()))
    fold_in = (
        fold_in_rows(features, evaluation, metrics["chosen"], models, attributes, args.fold_in_folds)
        if args.fold_in_folds
        else None
    )
    from offline.evaluation.shelves import shelf_recall

    chosen_fit = VECFRecommender.load(args.workdir / "runs" / "evaluation", features)  # the vecf row's fit
    shelves = shelf_recall(chosen_fit, evaluation)
    because = because_row(chosen_fit, evaluation, attributes)
    planted = planted_row(args.workdir / "data", args.workdir, args.plant_seed) if args.plant_seed >= 0 else None
    paired = {f"vecf - {name}": d for name, d in paired_against(models["vecf"], models).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "dataset": "hm",
        "weeks": args.weeks,
        "test_users": metrics["test_users"],
        "num_items": metrics["num_items"],
        "vecf_config": metrics["chosen"],
        "models": models,
        "vecf_by_seed": by_seed,
        "explanations": metrics.get("explanations", {}),
        "planted": planted,
        "fold_in": fold_in,
        "shelves": shelves,
        "because": because,
        "paired": paired,
        "provenance": provenance(),
    }
    (args.out / "quality.json").write_text(json.dumps(report, indent=2, default=str))
    ranked = sorted(models, key=lambda n: -models[n]["recall@50"])  # the legend in the table's order
    plot = plot_recall_curves(
        {n: models[n]["recall_curve"] for n in ranked},
        args.out / "quality_recall.png",
        title=f"H&M, last {args.weeks} weeks: Recall@K, whole catalog ranked",
    )
    rows = [{"model": n, **m} for n, m in sorted(models.items(), key=lambda kv: -kv[1]["recall@50"])]
    settings = {k: v for k, v in metrics["chosen"].items() if k in REAL_BASE or k in CHOSEN}
    (args.out / "quality.md").write_text(
        "\n".join(
            [
                f"# Model quality on H&M purchases (test: last {args.weeks} weeks)",
                "",
                f"{metrics['test_users']} customers seen before the test window; all {metrics['num_items']} articles "
                "ranked; repeat purchases count. Every model's settings were chosen on the validation window "
                f"({args.weeks} weeks before the test). Brackets: 95% user-level bootstrap interval. "
                "cold: articles without a purchase before the test window.",
                "",
                markdown_table(rows, ["model", *COLUMNS], intervals=True),
                seed_line(by_seed),
                f"VECF settings: `{json.dumps(settings)}`",
                "",
                f"![Recall@K]({plot.name})",
                "",
                "## VECF minus each model, on the same customers",
                "",
                "Per-customer difference on the test window, its 95% paired bootstrap interval and a sign-flip "
                "permutation p-value: a model beats another only where its interval lies above 0.",
                "",
                paired_table(paired),
                *fold_in_lines(fold_in),
                *shelf_lines(shelves),
                *because_lines(because),
                *explanation_section(metrics.get("explanations")),
                *(planted_lines(planted) if planted else []),
                "",
            ]
        )
    )
    print(f"bench-quality: {args.out / 'quality.md'}, {args.out / 'quality.json'}, {plot}")
    if is_default_results(args.out):
        update_docs(["quality"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
