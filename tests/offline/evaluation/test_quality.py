"""Benchmark evaluation helpers against values computed by hand on a 2-user, 6-item case.

user 0: relevant {0, 4}, ranking [0, 1, 4, 2, 3, 5]      items 4 and 5 are cold
user 1: relevant {2},    ranking [1, 2, 0, 3, 4, 5]
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from offline.evaluation.quality import (
    as_ranking,
    bootstrap_interval,
    evaluate_users,
    group_recall,
    markdown_table,
    plot_recall_curves,
    recall_curve,
)

RANKING = np.array([[0, 1, 4, 2, 3, 5], [1, 2, 0, 3, 4, 5]])
RELEVANT = {0: {0, 4}, 1: {2}}
COLD = np.array([False, False, False, False, True, True])


def scores_from(ranking: np.ndarray) -> np.ndarray:
    """Float scores whose ranking is `ranking`: 6 for the first item, 5 for the second, ..."""
    scores = np.zeros(ranking.shape, dtype=np.float32)
    for row, ranked in enumerate(ranking):
        scores[row, ranked] = np.arange(ranking.shape[1], 0, -1)
    return scores


class FixedScores:
    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def fit(self, data):
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users]


def test_as_ranking_reads_ints_as_rankings_and_floats_as_scores():
    np.testing.assert_array_equal(as_ranking(RANKING, 3), RANKING[:, :3])
    np.testing.assert_array_equal(as_ranking(scores_from(RANKING), 6), RANKING)
    with pytest.raises(ValueError, match="rank deeper"):
        as_ranking(RANKING, 7)


def test_recall_curve_by_hand():
    # K=1: (1/2 + 0) / 2; K=2: (1/2 + 1) / 2; K=3..6: (1 + 1) / 2
    expected = [0.25, 0.75, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(recall_curve(RANKING, RELEVANT, range(1, 7)), expected)
    np.testing.assert_allclose(recall_curve(scores_from(RANKING), RELEVANT, [2, 3]), [0.75, 1.0])
    np.testing.assert_allclose(recall_curve(RANKING, [{0, 4}, {2}], [1]), [0.25])  # row-aligned sets
    with pytest.raises(ValueError, match="no relevant items"):
        recall_curve(RANKING, {0: set(), 1: {2}}, [1])


def test_group_recall_by_hand():
    # cold@2: user 0 has cold relevant {4} at rank 3 -> 0; user 1 has none -> NaN. cold@3: user 0 -> 1.
    np.testing.assert_array_equal(group_recall(RANKING, RELEVANT, COLD, 2), [0.0, np.nan])
    np.testing.assert_array_equal(group_recall(RANKING, RELEVANT, COLD, 3), [1.0, np.nan])
    # warm@1: user 0's warm {0} at rank 1 -> 1; user 1's {2} at rank 2 -> 0.
    np.testing.assert_array_equal(group_recall(RANKING, RELEVANT, ~COLD, 1), [1.0, 0.0])


def test_evaluate_users_by_hand():
    ev = evaluate_users(FixedScores(scores_from(RANKING)), RELEVANT, ks=(1, 2), groups={"cold": COLD}, depth=6)
    np.testing.assert_array_equal(ev.users, [0, 1])
    np.testing.assert_array_equal(ev.ranked, RANKING)
    np.testing.assert_allclose(ev.values["recall@2"], [0.5, 1.0])
    np.testing.assert_allclose(ev.values["hr@1"], [1.0, 0.0])
    # NDCG@2, user 0: hit at rank 1 -> 1 / (1 + 1/log2 3); user 1: hit at rank 2 -> 1/log2 3.
    np.testing.assert_allclose(ev.values["ndcg@2"], [1 / (1 + 1 / math.log2(3)), 1 / math.log2(3)])
    np.testing.assert_array_equal(ev.values["recall_cold@2"], [0.0, np.nan])
    means = ev.means()
    assert means["recall@2"] == pytest.approx(0.75)
    assert means["recall_cold@2"] == pytest.approx(0.0)  # over the one user with a cold relevant item
    summary = ev.summary(n=200, seed=1)
    assert summary["recall_cold@2_users"] == 1 and summary["recall@2_users"] == 2
    assert summary["recall@2_low"] <= summary["recall@2"] <= summary["recall@2_high"]
    np.testing.assert_allclose(recall_curve(ev.ranked, RELEVANT, [1, 2]), [0.25, 0.75])


def test_evaluate_users_mask_is_optional_and_removes_items():
    ev = evaluate_users(FixedScores(scores_from(RANKING)), RELEVANT, ks=(1,), mask={0: {0}}, depth=5)
    np.testing.assert_array_equal(ev.ranked[0], [1, 4, 2, 3, 5])  # item 0 masked for user 0 only
    np.testing.assert_allclose(ev.values["recall@1"], [0.0, 0.0])
    with pytest.raises(ValueError, match="empty"):
        evaluate_users(FixedScores(scores_from(RANKING)), {}, ks=(1,))


def test_bootstrap_interval_by_hand_and_deterministic():
    # Two users, values 0 and 1: a resample's mean is 0, 1/2 or 1 with probability 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles of many resamples are 0 and 1.
    assert bootstrap_interval(np.array([0.0, 1.0]), n=2000, seed=0) == (0.0, 1.0)
    assert bootstrap_interval(np.array([0.3, 0.3, np.nan]), n=50) == pytest.approx((0.3, 0.3))
    values = np.random.default_rng(5).random(300)
    low, high = bootstrap_interval(values, n=500, seed=3)
    assert low < values.mean() < high and high - low < 0.15
    assert bootstrap_interval(values, n=500, seed=3) == (low, high)
    assert bootstrap_interval(values, n=500, seed=4) != (low, high)
    with pytest.raises(ValueError, match="no defined values"):
        bootstrap_interval(np.array([np.nan]))


def test_plot_recall_curves_writes_png(tmp_path):
    path = plot_recall_curves(
        {"a": recall_curve(RANKING, RELEVANT, range(1, 7)), "b": np.linspace(0, 1, 6)},
        tmp_path / "plots" / "recall.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_markdown_table():
    rows = [{"model": "pop", "recall@50": 0.025, "recall@50_low": 0.02, "recall@50_high": 0.031, "users": 3}]
    assert markdown_table(rows, ["model", "recall@50", "users"], digits=3) == (
        "| model | recall@50 | users |\n|---|---|---|\n| pop | 0.025 | 3 |\n"
    )
    assert "0.025 [0.020, 0.031]" in markdown_table(rows, ["model", "recall@50"], digits=3, intervals=True)


def test_bench_quality_seed_mean_and_line():
    from bench.quality import mean_row, seed_line

    rows = [
        {"recall@50": 0.02, "recall@50_low": 0.01, "recall@50_high": 0.03, "recall_curve": [0.0, 0.2], "n": 3},
        {"recall@50": 0.04, "recall@50_low": 0.02, "recall@50_high": 0.05, "recall_curve": [0.2, 0.4], "n": 3},
    ]
    mean = mean_row(rows)
    assert mean == {"recall@50": pytest.approx(0.03), "recall_curve": [pytest.approx(0.1), pytest.approx(0.3)]}
    line = seed_line({0: rows[0] | {"without_repeat_boost": {"recall@50": 0.01}}, 1: rows[1]})
    assert "seed 0: 0.0200 (without the boost 0.0100)" in line and "seed 1: 0.0400 (without the boost -)" in line


def test_paired_difference_by_hand_and_under_no_difference() -> None:
    from offline.evaluation.quality import paired_difference

    a = np.array([0.5, 0.5, 1.0, np.nan])
    b = np.array([0.0, 0.5, 0.0, 1.0])
    out = paired_difference(a, b, n=500)
    assert out["users"] == 3 and out["difference"] == pytest.approx(0.5)  # (0.5 + 0 + 1) / 3
    assert 0.0 <= out["low"] <= out["difference"] <= out["high"] <= 1.0
    rng = np.random.default_rng(3)
    better = rng.random(400)
    clear = paired_difference(better + 0.1, better, n=500)
    assert clear["low"] > 0 and clear["p_value"] < 0.01
    same = rng.random(400)
    null = paired_difference(same, rng.permutation(same), n=500)
    assert null["low"] < 0 < null["high"] and null["p_value"] > 0.05
    with pytest.raises(ValueError, match="one entry per user"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_paired_against_pairs_every_model_that_kept_the_same_users_and_tables_it() -> None:
    from offline.evaluation.quality import paired_against, paired_table

    ev = evaluate_users(FixedScores(scores_from(RANKING)), RELEVANT, ks=(1, 2), depth=6)
    mine = {"per_user": ev.per_user(("recall@2", "ndcg@2"))}
    assert mine["per_user"]["users"] == [0, 1] and mine["per_user"]["recall@2"] == [0.5, 1.0]
    worse = {"per_user": {"users": [0, 1], "recall@2": [0.0, 1.0], "ndcg@2": [0.0, 0.5]}}
    rows = {"mine": mine, "worse": worse, "no_users": {"recall@2": 0.5}}
    paired = paired_against(mine, rows, ("recall@2", "ndcg@2"))
    assert set(paired) == {"worse"}  # not itself, not a row without per-user values
    assert paired["worse"]["recall@2"]["difference"] == pytest.approx(0.25)  # (0.5 - 0 + 1 - 1) / 2
    ndcg = (1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3) - 0.5) / 2
    assert paired["worse"]["ndcg@2"]["difference"] == pytest.approx(ndcg)
    table = paired_table({f"mine - {n}": d for n, d in paired.items()})
    assert table.splitlines()[0] == "| comparison | recall@2 | ndcg@2 | users |"
    assert table.splitlines()[2].startswith("| mine - worse | +0.2500 [") and table.splitlines()[2].endswith("| 2 |")
    other_users = {"per_user": {"users": [0, 2], "recall@2": [0.0, 1.0], "ndcg@2": [0.0, 0.5]}}
    with pytest.raises(ValueError, match="other users"):
        paired_against(mine, {"other": other_users}, ("recall@2", "ndcg@2"))
