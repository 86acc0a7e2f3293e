"""Evaluation reports: metrics.json and a readable metrics.md beside it."""

from __future__ import annotations

import json
from pathlib import Path

from offline.evaluation.explanations import explanation_section
from offline.evaluation.quality import markdown_table, paired_table


def write_report(metrics: dict, workdir: Path) -> None:
    """metrics: {"dataset", "num_items", "test_users", "models": {name: {metric: value}}, ...}."""
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    models = metrics["models"]
    cols = [f"{m}@{k}" for k in (10,) for m in ("recall", "ndcg", "hr", "precision", "f1")] + ["recall@20"]
    lines = [
        f"# Evaluation: {metrics['dataset']}",
        "",
        f"Test users: {metrics['test_users']}; catalog: {metrics['num_items']} items; "
        f"every item a candidate, training items removed from each user's ranking.",
        "",
        markdown_table(
            [{"model": name, **m, "train s": f"{m.get('train_seconds', 0):.0f}"} for name, m in models.items()],
            ["model", *cols, "train s"],
        ),
    ]
    explained = {name: m for name, m in models.items() if "pointing_game" in m}
    if explained:
        keys = [
            f"{k}{s}{u}"
            for s in ("", "_core")
            for k in ("pointing_game", "attention_mass_in_mask")
            for u in ("", "_uniform")
        ]
        headers = [
            "pointing game",
            "uniform",
            "mass in mask",
            "uniform",
            "pointing (core)",
            "uniform",
            "mass (core)",
            "uniform",
        ]
        lines += [
            "## Explanations (planted preferences; uniform attention as the baseline)",
            "",
            "Mask: the grid cells the liked part touches; *core*: cells it covers at least 20% of.",
            "",
            markdown_table(
                [{"model": name, **m} for name, m in explained.items()],
                ["model", *keys, "pairs"],
                digits=3,
                headers=["model", *headers, "pairs"],
            ),
        ]
    if metrics.get("paired"):
        lines += ["## Paired differences (95% bootstrap over users, sign-flip permutation p-value)", ""]
        lines.append(paired_table(metrics["paired"]))
    lines += explanation_section(metrics.get("explanations"))
    (workdir / "metrics.md").write_text("\n".join(lines) + "\n")
