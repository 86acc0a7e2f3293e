"""RegionAttention (model.attention): hand-computed weights, broadcasting, config and save/load."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from model.attention import RegionAttention

R, C, A, D = 3, 2, 2, 2


def hand_layer() -> RegionAttention:
    """W_f = I, e = positions (only region 3 moves), W_p = [[2, -1], [0, 0]], w = [1, 1]."""
    layer = RegionAttention(attention_dim=A)
    layer.build((None, R, C), (None, D))
    layer.region_kernel.assign(np.eye(2, dtype=np.float32))
    layer.position.assign(np.array([[0.0, 0.0], [0.0, 0.0], [0.5, -0.5]], np.float32))
    layer.user_kernel.assign(np.array([[2.0, -1.0], [0.0, 0.0]], np.float32))
    layer.logit_kernel.assign(np.ones((A, 1), np.float32))
    return layer


REGIONS = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], np.float32)  # [1, R, C]


def random_layer(seed: int = 0) -> RegionAttention:
    rng = np.random.default_rng(seed)
    layer = RegionAttention(attention_dim=4)
    layer.build((None, 5, 3), (None, 2))
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    return layer


def test_weights_by_hand() -> None:
    # a_l = w^T ReLU((W_f f_l + e_l) * (W_p p_u)), alpha = softmax_l(a); p_u = [1, 0] has unit length.
    # W_f f + e = [[1, 0], [0, 1], [1.5, 0.5]];  W_p p_u = [2, -1]
    # products    [[2, 0], [0, -1], [3, -0.5]] -> ReLU [[2, 0], [0, 0], [3, 0]] -> logits [2, 0, 3]
    # softmax: [e^2, 1, e^3] / (e^2 + 1 + e^3) = [7.389, 1, 20.086] / 28.475 = [0.2595, 0.0351, 0.7054]
    alpha = np.asarray(hand_layer()(REGIONS, np.array([[1.0, 0.0]], np.float32)))
    expected = np.exp([2.0, 0.0, 3.0]) / np.exp([2.0, 0.0, 3.0]).sum()
    np.testing.assert_allclose(alpha, [expected], rtol=1e-5)
    np.testing.assert_allclose(alpha, [[0.2595, 0.0351, 0.7054]], atol=1e-4)


def test_position_term_changes_the_weights() -> None:
    layer = hand_layer()
    layer.position.assign(np.zeros((R, A), np.float32))
    # without e_3 region 3 projects to [1, 1] -> product [2, -1] -> logit 2, tied with region 1
    alpha = np.asarray(layer(REGIONS, np.array([[1.0, 0.0]], np.float32)))
    expected = np.exp([2.0, 0.0, 2.0]) / np.exp([2.0, 0.0, 2.0]).sum()
    np.testing.assert_allclose(alpha, [expected], rtol=1e-5)


def test_weights_sum_to_one_along_regions() -> None:
    rng = np.random.default_rng(1)
    alpha = np.asarray(
        random_layer()(rng.normal(size=(6, 5, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32))
    )
    assert alpha.shape == (6, 5)
    assert (alpha > 0).all()
    np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-6)


def test_only_the_direction_of_the_user_vector_matters() -> None:
    # project_users normalises p_u to unit length (L2 regularisation shrinks it; see the comment there),
    # so p_u = [3, 0] gives the same map as [1, 0] (un-normalised it would give logits [6, 0, 9])
    layer = hand_layer()
    short, long = (np.asarray(layer(REGIONS, np.array([[s, 0.0]], np.float32))) for s in (1.0, 3.0))
    np.testing.assert_allclose(long, short, rtol=1e-5)


def test_a_fresh_layer_attends_uniformly() -> None:
    # w starts at zero (see build): every logit is 0 whatever the regions and users
    layer = RegionAttention(attention_dim=4)
    rng = np.random.default_rng(5)
    alpha = np.asarray(layer(rng.normal(size=(2, 5, 3)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)))
    np.testing.assert_allclose(alpha, np.full((2, 5), 0.2), rtol=1e-6)


def test_different_users_get_different_maps_of_the_same_image() -> None:
    layer = hand_layer()
    regions = np.repeat(REGIONS, 2, axis=0)
    users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # the second user projects to [0, 0]: uniform
    alpha = np.asarray(layer(regions, users))
    np.testing.assert_allclose(alpha[1], np.full(R, 1 / R), rtol=1e-6)
    assert np.abs(alpha[0] - alpha[1]).max() > 0.3
    assert alpha[0].argmax() == 2


def test_catalog_broadcasting_matches_pairwise_weights() -> None:
    """[N, R, A] item tables with [B, 1, A] users -> [B, N, R], as the catalog scoring uses them."""
    rng = np.random.default_rng(2)
    layer = random_layer()
    regions = rng.normal(size=(4, 5, 3)).astype(np.float32)  # N = 4 items
    users = rng.normal(size=(3, 2)).astype(np.float32)  # B = 3 users
    table = layer.project_regions(regions)  # [N, R, A]
    user_proj = layer.project_users(users)  # [B, A]
    alpha = np.asarray(layer.weights_from_projections(table, user_proj[:, None, :]))
    assert alpha.shape == (3, 4, 5)
    for b in range(3):
        for n in range(4):
            pair = np.asarray(layer(regions[n : n + 1], users[b : b + 1]))[0]
            np.testing.assert_allclose(alpha[b, n], pair, rtol=1e-5, atol=1e-7)
    assert not np.allclose(alpha[0], alpha[1])


@pytest.mark.parametrize("dim", [0, -3])
def test_invalid_attention_dim_raises(dim: int) -> None:
    with pytest.raises(ValueError, match=f"attention_dim must be >= 1, got {dim}"):
        RegionAttention(attention_dim=dim)


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_invalid_logit_scale_raises(scale: float) -> None:
    with pytest.raises(ValueError, match="logit_scale must be > 0"):
        RegionAttention(attention_dim=2, logit_scale=scale)


def test_logit_scale_multiplies_the_hand_computed_logits() -> None:
    # Same case as test_weights_by_hand with logits [2, 0, 3] scaled by 0.5 -> [1, 0, 1.5].
    layer = hand_layer()
    scaled = RegionAttention.from_config({**layer.get_config(), "logit_scale": 0.5})
    scaled.build((None, R, C), (None, D))
    scaled.set_weights(layer.get_weights())
    alpha = np.asarray(scaled(REGIONS, np.array([[1.0, 0.0]], np.float32)))
    np.testing.assert_allclose(alpha, [np.exp([1.0, 0.0, 1.5]) / np.exp([1.0, 0.0, 1.5]).sum()], rtol=1e-5)


def test_get_config_from_config_round_trip() -> None:
    layer = random_layer()
    config = layer.get_config()
    assert config["attention_dim"] == 4
    clone = RegionAttention.from_config(config)
    assert clone.attention_dim == 4 and clone.name == layer.name
    clone.build((None, 5, 3), (None, 2))
    clone.set_weights(layer.get_weights())
    rng = np.random.default_rng(3)
    regions, users = rng.normal(size=(2, 5, 3)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(clone(regions, users)), np.asarray(layer(regions, users)))


def test_keras_save_load_round_trip_of_a_functional_wrapper(tmp_path: Path) -> None:
    regions_in, users_in = keras.Input((5, 3), name="regions"), keras.Input((2,), name="users")
    layer = RegionAttention(attention_dim=4, name="attention")
    model = keras.Model([regions_in, users_in], layer(regions_in, users_in))
    rng = np.random.default_rng(4)
    for weight in layer.weights:  # non-default weights (the position table starts at zero)
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    regions, users = rng.normal(size=(3, 5, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    expected = np.asarray(model.predict([regions, users], verbose=0))

    model.save(tmp_path / "attention.keras")
    loaded = keras.saving.load_model(tmp_path / "attention.keras")
    restored = loaded.get_layer("attention")
    assert isinstance(restored, RegionAttention) and restored.attention_dim == 4
    np.testing.assert_array_equal(np.asarray(restored.position), np.asarray(layer.position))
    np.testing.assert_array_equal(np.asarray(loaded.predict([regions, users], verbose=0)), expected)
