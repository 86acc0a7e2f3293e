"""VECF (model.vecf): catalog vs pairwise scoring, -att, cold items, losses, save/load and a short fit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from model.vecf import VECF

U, N, R, C, DIM = 3, 5, 4, 6, 4


def make_model(seed: int = 0, cold: bool = False, **kwargs) -> VECF:
    """A tiny VECF with fixed random weights and region features; item embeddings and biases are random
    too unless `cold` (then they keep their zero initialisation, as for items nobody interacted with)."""
    args = dict(num_users=U, num_items=N, num_regions=R, channels=C, dim=DIM, attention_dim=3, seed=seed) | kwargs
    model = VECF(**args)
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        if not (cold and weight.name in ("item_embedding", "item_bias")):
            weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    model.region_features.assign(rng.normal(size=(args["num_items"], R, C)).astype(np.float16))
    return model


def batch(users, pos, neg, **extra) -> dict:
    return {"user": np.array(users, np.int32), "pos": np.array(pos, np.int32), "neg": np.array(neg, np.int32), **extra}


def test_catalog_scores_equal_pairwise_scores() -> None:
    model = make_model()
    users = np.array([0, 2], np.int32)
    user_vectors = ops.take(model.user_embedding, users, axis=0)
    region_proj, value_proj = model.catalog_tables(chunk=2)  # chunked: 3 chunks for 5 items
    assert tuple(region_proj.shape) == (N, R, 3) and tuple(value_proj.shape) == (N, R, DIM + 1)
    scores, alpha = model.score_tables(
        user_vectors, model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False
    )
    scores, alpha = np.asarray(scores), np.asarray(alpha)
    assert scores.shape == (2, N) and alpha.shape == (2, N, R)
    for row, u in enumerate(users):
        pair_scores, pair_alpha, _ = model.score_pairs(
            ops.take(model.user_embedding, np.full(N, u, np.int32), axis=0), np.arange(N, dtype=np.int32)
        )
        np.testing.assert_allclose(scores[row], np.asarray(pair_scores), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(alpha[row], np.asarray(pair_alpha), rtol=1e-5, atol=1e-6)
    assert np.ptp(scores[0]) > 1e-3 and not np.allclose(scores[0], scores[1])


@pytest.mark.parametrize("use_attention,affinity", [(True, 0.0), (False, 0.0), (True, 2.0)])
def test_split_tables_give_the_scores_of_score_tables(use_attention: bool, affinity: float) -> None:
    # serving's form (RegionAttention.split_regions/split_query) is the same function as training's
    model = make_model(use_attention=use_attention, num_items=7, affinity=affinity)
    users = np.asarray(model.user_embedding)  # [3, D]
    region_proj, value_proj = (np.asarray(t) for t in model.catalog_tables())
    split = np.asarray(model.attention.split_regions(region_proj))
    assert split.shape == (7, R, 6) and (split >= 0).all()
    want, want_alpha = (
        np.asarray(t)
        for t in model.score_tables(
            users, model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False
        )
    )  # [3, 7]
    got, alpha = model.score_catalog(users, model.item_embedding, model.item_bias, split, value_proj)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(alpha), want_alpha, rtol=1e-5, atol=1e-6)
    items = np.array([[6, 0, 3, 3], [1, 2, 5, 4], [0, 6, 2, 1]])  # each user's own candidates, repeats allowed
    q, b = np.asarray(model.item_embedding)[items], np.asarray(model.item_bias)[items]
    got, alpha = model.score_candidates(users, q, b, split[items], value_proj[items])  # batched path
    np.testing.assert_allclose(np.asarray(got), np.take_along_axis(want, items, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(alpha), want_alpha[np.arange(3)[:, None], items], rtol=1e-5, atol=1e-6)
    for u in range(3):  # one user: the plain-matrix path
        got, alpha = model.score_candidates(
            users[u : u + 1], q[u : u + 1], b[u : u + 1], split[items[u : u + 1]], value_proj[items[u : u + 1]]
        )
        np.testing.assert_allclose(np.asarray(got)[0], want[u, items[u]], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(alpha)[0], want_alpha[u, items[u]], rtol=1e-5, atol=1e-6)
    assert np.ptp(want) > 1e-3


def test_score_matches_the_formula_in_the_docstring() -> None:
    # score(u, i) = p_u . q_i + b_i + sum_l alpha_l * ([p_u, 1] . W_v f_i^l)
    model = make_model()
    user, item = 1, 3
    p = np.asarray(model.user_embedding)[user]
    q, b = np.asarray(model.item_embedding)[item], np.asarray(model.item_bias)[item]
    f = np.asarray(model.region_features)[item].astype(np.float32)  # feature_scale = 1
    w_v = np.asarray(model.value.kernel)  # [C, D+1]
    score, alpha, _ = model.score_pairs(ops.take(model.user_embedding, [user], axis=0), np.array([item], np.int32))
    alpha = np.asarray(alpha)[0]
    expected = p @ q + b + alpha @ ((f @ w_v) @ np.r_[p, 1.0])
    assert float(np.asarray(score)[0]) == pytest.approx(float(expected), rel=1e-5, abs=1e-5)


def test_affinity_adds_the_users_value_of_each_region_to_the_attention_logits() -> None:
    # alpha = softmax(VECF's logits + affinity * [p_u, 1] . W_v f_l), by hand
    model = make_model(affinity=3.0)
    user, item = 2, 1
    p = np.asarray(model.user_embedding)[user]
    f = np.asarray(model.region_features)[item].astype(np.float32)
    att = model.attention
    logits = np.asarray(att.logits_from_projections(att.project_regions(f), att.project_users(p[None])[0]))
    values = (f @ np.asarray(model.value.kernel)) @ np.r_[p, 1.0]  # [R]
    want = np.exp(logits + 3.0 * values)
    _, alpha, _ = model.score_pairs(ops.take(model.user_embedding, [user], axis=0), np.array([item], np.int32))
    np.testing.assert_allclose(np.asarray(alpha)[0], want / want.sum(), rtol=1e-4, atol=1e-6)
    assert VECF.from_config(model.get_config()).affinity == 3.0
    with pytest.raises(ValueError, match="affinity must be >= 0"):
        make_model(affinity=-0.5)


def test_where_channels_key_the_attention_on_the_local_channels_alone() -> None:
    # a dual backbone's features: the first 2 channels say where, all 6 feed the value
    model = make_model(where_channels=2)
    assert tuple(model.attention.region_kernel.shape) == (2, 3)
    regions = model.regions(np.arange(N, dtype=np.int32))
    changed = np.array(regions).copy()
    changed[..., 2:] += 5.0  # what changes, where does not
    (proj, value), (proj2, value2) = model.tables(regions), model.tables(changed)
    np.testing.assert_allclose(np.asarray(proj), np.asarray(proj2), rtol=1e-6)
    assert not np.allclose(np.asarray(value), np.asarray(value2))
    changed[..., :2] += 1.0
    assert not np.allclose(np.asarray(model.tables(changed)[0]), np.asarray(proj))
    # the value: the local channels per region, plus the photo's mean "what" vector in every region
    region = np.asarray(regions)
    local = region[..., :2] @ np.asarray(model.value.kernel)
    content = region[..., 2:].mean(axis=1) @ np.asarray(model.content.kernel)
    np.testing.assert_allclose(np.asarray(value), local + content[:, None, :], rtol=1e-5, atol=1e-5)
    assert VECF.from_config(model.get_config()).where_channels == 2
    with pytest.raises(ValueError, match="where_channels must be in"):
        make_model(where_channels=C + 1)


def test_without_attention_every_region_weighs_exactly_one_over_r() -> None:
    model = make_model(use_attention=False)
    _, alpha, _ = model.score_pairs(ops.take(model.user_embedding, [0, 1, 2], axis=0), np.array([0, 3, 4], np.int32))
    np.testing.assert_array_equal(np.asarray(alpha), np.full((3, R), 1 / R, np.float32))
    with_attention = make_model(use_attention=True)  # same weights: the attention is not uniform
    _, alpha, _ = with_attention.score_pairs(
        ops.take(with_attention.user_embedding, [0], axis=0), np.array([0], np.int32)
    )
    assert np.ptp(np.asarray(alpha)) > 1e-3


def test_a_cold_item_is_scored_from_its_image() -> None:
    model = make_model(cold=True)
    assert not np.asarray(model.item_embedding).any() and not np.asarray(model.item_bias).any()
    features = np.asarray(model.region_features).copy()
    features[4] = 0  # item 4 has no image signal either
    model.region_features.assign(features)
    scores, _, _ = model.score_pairs(ops.take(model.user_embedding, [0, 0, 1], axis=0), np.array([0, 4, 0], np.int32))
    scores = np.asarray(scores)
    assert abs(scores[0]) > 1e-4 and abs(scores[2]) > 1e-4  # from the region features alone
    assert scores[1] == 0.0  # nothing to score from: exactly zero
    assert scores[0] != scores[2]  # and personal: users differ on the same cold item


@pytest.mark.parametrize("loss", ["bpr", "pointwise"])
def test_compute_loss_by_hand(loss: str) -> None:
    model = make_model(loss=loss, l2=0.0)
    x = batch([0, 1, 2], [0, 1, 2], [3, 4, 0])
    y_pred = model(x)
    pos, neg = np.asarray(y_pred["pos"], np.float64), np.asarray(y_pred["neg"], np.float64)
    softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731
    # bpr: -log sigmoid(pos - neg) = softplus(neg - pos); pointwise: BCE with logits, one negative per positive
    expected = softplus(neg - pos).mean() if loss == "bpr" else (softplus(-pos) + softplus(neg)).mean()
    assert float(model.compute_loss(x, None, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_compute_loss_adds_l2_of_the_batch_rows() -> None:
    with_l2, without = make_model(l2=0.1), make_model(l2=0.0)
    x = batch([0, 1], [2, 3], [4, 2])
    users, items = np.asarray(with_l2.user_embedding), np.asarray(with_l2.item_embedding)
    squares = (users[[0, 1]] ** 2).sum() + (items[[2, 3]] ** 2).sum() + (items[[4, 2]] ** 2).sum()
    difference = float(with_l2.compute_loss(x, None, with_l2(x))) - float(without.compute_loss(x, None, without(x)))
    assert difference == pytest.approx(0.1 * squares / 2, rel=1e-4)


def test_compute_loss_with_the_review_decoder_adds_a_masked_cross_entropy() -> None:
    model = make_model(vocab_size=9, beta=0.5, l2=0.0)
    tokens = np.array([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]], np.int32)
    x = batch([0, 1], [0, 1], [2, 3], tokens=tokens)
    y_pred = model(x)
    assert tuple(y_pred["review_logits"].shape) == (2, 5, 9)
    total = float(model.compute_loss(x, None, y_pred))
    ranking = float(np.mean(np.log1p(np.exp(np.asarray(y_pred["neg"]) - np.asarray(y_pred["pos"])))))
    assert total > ranking + 1e-3  # the decoder term is added
    # padding targets are masked: changing logits only at PAD positions leaves the loss unchanged
    logits = np.asarray(y_pred["review_logits"]).copy()
    logits[1, 2:] += 5.0 * np.arange(9)  # targets of row 1 from position 2 on are PAD
    moved = dict(y_pred, review_logits=logits)
    assert float(model.compute_loss(x, None, moved)) == pytest.approx(total, rel=1e-6)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="'hinge'"):
        VECF(num_users=U, num_items=N, num_regions=R, channels=C, loss="hinge")
    with pytest.raises(ValueError, match=">= 1"):
        VECF(num_users=U, num_items=0, num_regions=R, channels=C)


@pytest.mark.parametrize("where_channels", [0, 2])
def test_keras_save_load_round_trip_preserves_scores(tmp_path: Path, where_channels: int) -> None:
    model = make_model(vocab_size=9, beta=0.5, feature_scale=0.5, use_attention=True, where_channels=where_channels)
    x = batch([0, 1, 2], [0, 1, 2], [3, 4, 0], tokens=np.array([[1, 5, 2, 0]] * 3, np.int32))
    expected = {k: np.asarray(v) for k, v in model(x).items()}
    model.save(tmp_path / "vecf.keras")
    loaded = keras.saving.load_model(tmp_path / "vecf.keras")
    assert isinstance(loaded, VECF) and loaded.get_config() == model.get_config()
    assert loaded.region_features.dtype == "float16"
    np.testing.assert_array_equal(np.asarray(loaded.region_features), np.asarray(model.region_features))
    got = loaded(x)
    assert set(got) == {"pos", "neg", "review_logits"}
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=1e-6, atol=1e-6, err_msg=key)


def test_a_short_fit_lowers_the_bpr_loss_on_a_separable_problem() -> None:
    # users 0 and 1 like items 0, 1 (regions show pattern A); user 2 likes items 2, 3 (pattern B)
    model = make_model(l2=0.0, seed=3)  # every weight fixed by the seed
    pattern_a, pattern_b = np.zeros((R, C)), np.zeros((R, C))
    pattern_a[:, 0], pattern_b[:, 1] = 1.0, 1.0
    model.region_features.assign(
        np.stack([pattern_a, pattern_a, pattern_b, pattern_b, pattern_a + pattern_b]).astype(np.float16)
    )
    x = batch([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 2, 3], [2, 3, 3, 2, 0, 1])
    before = float(model.compute_loss(x, None, model(x)))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(x, batch_size=6, epochs=15, shuffle=False, verbose=0)
    after = float(model.compute_loss(x, None, model(x)))
    assert after < 0.5 * before, (before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = model(x)
    assert (np.asarray(out["pos"]) > np.asarray(out["neg"])).all()
