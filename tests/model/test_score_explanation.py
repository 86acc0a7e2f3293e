"""What a map explains (model.explanation, VECF.explain_candidates), on inputs small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops

from model import explanation
from model.vecf import VECF

R = 2  # regions


def tiny_model(**kwargs) -> VECF:
    """One channel, D = 1: every term of the score is a product of a few hand-picked numbers. The attention
    kernels start at zero, so with `affinity` the logits are exactly affinity * v_l."""
    return VECF(num_users=1, num_items=1, num_regions=R, channels=1, dim=1, attention_dim=2, **kwargs)


def tiny_tables(model: VECF, p_u: float = 2.0, q_i: float = 3.0, b_i: float = 0.5, batch: int = 1) -> tuple:
    """(users [B, 1], items [B, 1, 1], biases [B, 1], split_proj [B, 1, R, 4], value_proj [B, 1, R, 2]) with
    W_v = [1, 0.5] and region features f = [1, 3]: v_l = [p_u, 1] . W_v f_l = 2.5 f_l = [2.5, 7.5]."""
    features = np.array([[1.0], [3.0]], np.float32)  # [R, C]
    value = features @ np.array([[1.0, 0.5]], np.float32)  # [R, D + 1]
    split = np.asarray(model.attention.split_regions(model.attention.project_regions(features)))  # [R, 4]
    return (
        np.full((batch, 1), p_u, np.float32),
        np.full((batch, 1, 1), q_i, np.float32),
        np.full((batch, 1), b_i, np.float32),
        np.broadcast_to(split, (batch, 1, *split.shape)),
        np.broadcast_to(value, (batch, 1, *value.shape)),
    )


def as_numpy(parts: dict) -> dict:
    return {name: np.asarray(value) for name, value in parts.items()}


def test_uniform_attention_splits_the_visual_score_evenly_with_concentration_zero() -> None:
    model = tiny_model(use_attention=False)  # alpha = [0.5, 0.5] exactly
    parts = as_numpy(model.explain_candidates(*tiny_tables(model)))
    np.testing.assert_allclose(parts["alpha"], [[[0.5, 0.5]]])
    np.testing.assert_allclose(parts["contributions"], [[[1.25, 3.75]]])  # 0.5 * [2.5, 7.5]
    np.testing.assert_allclose(parts["visual"], [[5.0]])
    np.testing.assert_allclose(parts["collaborative"], [[6.5]])  # 2 * 3 + 0.5
    np.testing.assert_allclose(parts["scores"], [[11.5]], rtol=1e-6)
    np.testing.assert_allclose(parts["concentration"], [[0.0]], atol=1e-6)
    np.testing.assert_allclose(parts["visual_share"], [[5.0 / 11.5]], rtol=1e-6)
    np.testing.assert_allclose(explanation.region_shares(parts["contributions"], np), [[[0.25, 0.75]]])


def test_parts_add_up_to_the_scores_of_score_candidates() -> None:
    model = tiny_model(affinity=1.0)  # alpha = softmax([2.5, 7.5])
    tables = tiny_tables(model, batch=3)  # B = 3: the batched path, not the one-user one
    parts = as_numpy(model.explain_candidates(*tables))
    scores, alpha = (np.asarray(a) for a in model.score_candidates(*tables))
    np.testing.assert_allclose(parts["scores"], scores)
    np.testing.assert_allclose(parts["alpha"], alpha)
    np.testing.assert_allclose(parts["collaborative"] + parts["contributions"].sum(-1), scores, rtol=1e-6)
    want = np.exp([2.5, 7.5]) / np.exp([2.5, 7.5]).sum()
    np.testing.assert_allclose(parts["alpha"][0, 0], want, rtol=1e-5)
    entropy = -(want * np.log(want)).sum()
    np.testing.assert_allclose(parts["concentration"], np.full((3, 1), 1 - entropy / math.log(R)), rtol=1e-5)


def test_a_region_that_pulls_the_score_down_has_a_negative_share() -> None:
    contributions = np.array([[3.0, -1.0, 0.0]])
    shares = explanation.region_shares(contributions, np)
    np.testing.assert_allclose(shares, [[0.75, -0.25, 0.0]])
    assert np.abs(shares).sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(explanation.region_shares(np.zeros((1, 3)), np), np.zeros((1, 3)))  # no 0 / 0


def test_visual_share_counts_magnitudes() -> None:
    np.testing.assert_allclose(
        explanation.visual_share(np.array([3.0, -3.0, 0.0]), np.array([-1.0, 1.0, 0.0]), np), [0.25, 0.25, 0.0]
    )


def test_concentration_is_one_for_a_single_region_and_the_same_in_numpy_and_keras() -> None:
    alpha = np.array([[1.0, 0.0, 0.0, 0.0], [0.25] * 4, [0.7, 0.1, 0.1, 0.1]], np.float32)
    by_numpy = explanation.concentration(alpha, np)
    np.testing.assert_allclose(by_numpy[:2], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(explanation.concentration(ops.convert_to_tensor(alpha), ops)), by_numpy, rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize(
    "concentration,share,reason",
    [
        (0.05, 0.5, explanation.NEAR_UNIFORM),
        (0.5, 0.01, explanation.LITTLE_VISUAL_SCORE),
        (0.05, 0.01, explanation.NEAR_UNIFORM),
        (0.5, 0.5, None),
        (0.5, None, None),  # an older export: concentration alone
    ],
)
def test_uninformative_reason(concentration: float, share: float | None, reason: str | None) -> None:
    assert explanation.uninformative_reason(concentration, share) == reason
