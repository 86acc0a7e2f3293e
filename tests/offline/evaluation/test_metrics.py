"""Ranking metrics (offline.evaluation.ranking_metrics) and the evaluation loop
(offline.evaluation.evaluate) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offline.evaluation import ranking_metrics as metrics
from offline.evaluation.evaluate import explanation_metrics
from offline.evaluation.rank_eval import rank_metrics, top_k

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "x"}  # "x" is relevant but never ranked: it counts in recall's denominator


def test_hit_rate_by_hand() -> None:
    assert metrics.hit_rate(RANKED, RELEVANT, 1) == 0.0  # top-1 is "a"
    assert metrics.hit_rate(RANKED, RELEVANT, 2) == 1.0  # "b" at rank 2
    assert metrics.hit_rate(RANKED, set(), 5) == 0.0


def test_precision_by_hand() -> None:
    assert metrics.precision(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)  # {b} of a, b, c
    assert metrics.precision(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)  # {b, d} of 5
    assert metrics.precision(["b"], RELEVANT, 4) == pytest.approx(1 / 4)  # a short list still divides by k


def test_recall_by_hand() -> None:
    assert metrics.recall(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)  # 1 of 3 relevant
    assert metrics.recall(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)  # 2 of 3 relevant


def test_recall_of_a_user_without_relevant_items_raises() -> None:
    with pytest.raises(ValueError, match="no relevant items"):
        metrics.recall(RANKED, set(), 5)


def test_f1_by_hand() -> None:
    # k=5: p = 2/5, r = 2/3 -> 2 * (2/5)(2/3) / (2/5 + 2/3) = (8/15) / (16/15) = 0.5
    assert metrics.f1(RANKED, RELEVANT, 5) == pytest.approx(0.5)
    # k=3: p = r = 1/3 -> f1 = 1/3
    assert metrics.f1(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    # no hit: p = r = 0 -> 0, not a division by zero
    assert metrics.f1(RANKED, {"z"}, 5) == 0.0


def test_ndcg_by_hand() -> None:
    # k=5: hits at ranks 2 and 4 -> DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161;
    # ideal has min(3, 5) = 3 hits -> 1 + 1/log2(3) + 1/log2(4) = 2.13093; NDCG = 0.49819
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert metrics.ndcg(RANKED, RELEVANT, 5) == pytest.approx(expected)
    assert metrics.ndcg(RANKED, RELEVANT, 5) == pytest.approx(0.49819, abs=1e-5)
    # k=2: one hit at rank 2 -> 0.63093; ideal min(3, 2) = 2 hits -> 1.63093; NDCG = 0.38685
    assert metrics.ndcg(RANKED, RELEVANT, 2) == pytest.approx(0.38685, abs=1e-5)
    assert metrics.ndcg(["b", "d"], {"b", "d"}, 2) == pytest.approx(1.0)  # the ideal list
    assert metrics.ndcg(RANKED, {"z"}, 5) == 0.0


def test_user_metrics_keys_and_values() -> None:
    out = metrics.user_metrics(RANKED, RELEVANT, ks=(2, 5))
    assert set(out) == {f"{m}@{k}" for m in ("hr", "precision", "recall", "f1", "ndcg") for k in (2, 5)}
    assert out["recall@5"] == pytest.approx(2 / 3)
    assert out["precision@2"] == pytest.approx(1 / 2)
    assert out["hr@2"] == 1.0


# ---- offline.evaluation.evaluate ---------------------------------------------------------------------------


def test_top_k_orders_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [0, 2, 1]])
    np.testing.assert_array_equal(top_k(scores, 10), [[1, 3, 2, 0], [0, 2, 1, 3]])  # k clipped to N


def test_top_k_breaks_ties_inside_the_top_k_by_item_index() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 2, 4]])
    np.testing.assert_array_equal(top_k(np.zeros((1, 10)), 3), [[0, 1, 2]])


def test_top_k_breaks_ties_at_the_boundary_by_item_index() -> None:
    # items 2 and 3 tie for the single slot: the docstring promises the lower index, 2
    np.testing.assert_array_equal(top_k(np.array([[0.0, 0.0, 1.0, 1.0]]), 1), [[2]])
    # item 4 is best; items 0..3 tie for the remaining two slots -> 0, 1
    np.testing.assert_array_equal(top_k(np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]), 3), [[4, 0, 1]])


class FixedScores:
    """A Recommender whose scores are a fixed table; returns read-only views like Popularity does."""

    name = "fixed"

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.calls: list[list[int]] = []

    def fit(self, data):  # pragma: no cover - not used
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self.calls.append(np.asarray(users).tolist())
        out = self.table[users]
        out.flags.writeable = False
        return out


SCORES = np.array(
    [
        [9.0, 5.0, 1.0, 0.0],  # user 0: item 0 is seen and must be masked
        [4.0, 3.0, 2.0, 1.0],  # user 1
        [0.0, 0.0, 0.0, 9.0],
    ]
)  # user 2: not evaluated


@pytest.mark.parametrize("batch", [1, 256])
def test_rank_metrics_by_hand_with_seen_items_masked(batch: int) -> None:
    model = FixedScores(SCORES)
    out = rank_metrics(model, relevant={0: {1}, 1: {2, 3}}, seen={0: {0}}, ks=(1, 3), batch=batch)
    # user 0: item 0 masked -> ranked [1, 2, 3]; relevant {1}: every @1 and @3 metric is 1 except p@3 = 1/3
    # user 1: ranked [0, 1, 2]; relevant {2, 3}: all @1 are 0; @3: hr 1, p 1/3, r 1/2,
    #         f1 = 2(1/3)(1/2)/(5/6) = 0.4, ndcg = (1/log2 4) / (1 + 1/log2 3) = 0.5 / 1.63093 = 0.30657
    assert out["users"] == 2
    assert out["hr@1"] == pytest.approx(0.5)
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["hr@3"] == pytest.approx(1.0)
    assert out["precision@3"] == pytest.approx(1 / 3)
    assert out["recall@3"] == pytest.approx(0.75)
    assert out["f1@3"] == pytest.approx((0.5 + 0.4) / 2)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5 / (1 + 1 / math.log2(3))) / 2)
    assert sorted(u for call in model.calls for u in call) == [0, 1]  # only evaluated users are scored


def test_rank_metrics_without_masking_sees_the_seen_item() -> None:
    out = rank_metrics(FixedScores(SCORES), relevant={0: {1}}, seen={}, ks=(1,))
    assert out["hr@1"] == 0.0  # item 0 (score 9) is ranked first when it is not masked


def test_rank_metrics_on_an_empty_split_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        rank_metrics(FixedScores(SCORES), relevant={}, seen={})


class FixedAttention:
    def __init__(self, table: np.ndarray) -> None:
        self.table = table  # [P, R], indexed by the pair's row via `items`

    def attention(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.table[items]


MASKS = np.array([[True, True, False, False], [False, False, False, True]])


def _explain(alphas: np.ndarray, batch: int = 512) -> dict:
    pairs = np.arange(len(alphas))
    return explanation_metrics(FixedAttention(alphas), pairs, pairs, MASKS, batch=batch)


def test_explanation_metrics_one_hot_inside_the_mask() -> None:
    out = _explain(np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]), batch=1)
    assert out["pointing_game"] == 1.0 and out["attention_mass_in_mask"] == pytest.approx(1.0)
    assert out["pairs"] == 2
    # baseline: |mask| / R = (2/4 + 1/4) / 2 = 0.375
    assert out["pointing_game_uniform"] == pytest.approx(0.375)
    assert out["attention_mass_in_mask_uniform"] == pytest.approx(0.375)


def test_explanation_metrics_one_hot_outside_the_mask() -> None:
    out = _explain(np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    assert out["pointing_game"] == 0.0 and out["attention_mass_in_mask"] == 0.0


def test_explanation_metrics_uniform_attention_scores_the_baseline() -> None:
    out = _explain(np.full((2, 4), 0.25))
    # every cell ties for the top: pointing = |mask| / R per pair = (0.5 + 0.25) / 2
    assert out["pointing_game"] == pytest.approx(0.375)
    assert out["attention_mass_in_mask"] == pytest.approx(0.375)


def test_explanation_metrics_without_pairs_raises() -> None:
    with pytest.raises(ValueError, match="no ground-truth pairs"):
        explanation_metrics(
            FixedAttention(np.zeros((0, 4))), np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4), bool)
        )
