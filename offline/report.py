"""Evaluation reports: metrics.json and a readable metrics.md beside it."""

from __future__ import annotations

import json
from pathlib import Path

from offline.explanations import explanation_section


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
        "| model | " + " | ".join(cols) + " | train s |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for name, m in models.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in cols) + f" | {m.get('train_seconds', 0):.0f} |")
    if any("pointing_game" in m for m in models.values()):
        lines += [
            "",
            "## Explanations (planted preferences; uniform attention as the baseline)",
            "",
            "Mask: the grid cells the liked part touches; *core*: cells it covers at least 20% of.",
            "",
            "| model | pointing game | uniform | mass in mask | uniform | pointing (core) | uniform "
            "| mass (core) | uniform | pairs |",
            "|---" * 10 + "|",
        ]
        for name, m in models.items():
            if "pointing_game" in m:
                cells = [
                    m[f"{k}{s}{u}"]
                    for s in ("", "_core")
                    for k in ("pointing_game", "attention_mass_in_mask")
                    for u in ("", "_uniform")
                ]
                lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {m['pairs']} |")
    for pair, by_metric in metrics.get("paired", {}).items():
        for metric, d in by_metric.items():
            lines += [
                "",
                f"Paired, {pair}, {metric}: {d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
                f"(95% bootstrap over {d['users']} users; permutation p = {d['p_value']:.3f})",
            ]
    lines += explanation_section(metrics.get("explanations"))
    (workdir / "metrics.md").write_text("\n".join(lines) + "\n")
