"""Baselines on tiny synthetic data where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from offline.data.indexed import IndexedData
from offline.evaluation.quality import evaluate_users
from offline.recommenders.baselines import BASELINES, VISUAL, build_baseline
from offline.recommenders.baselines._common import DAY, user_item_matrix
from offline.recommenders.baselines.als import _cg_half_step
from offline.recommenders.baselines.popularity import Popularity


def make_data(triples, num_users: int, num_items: int, validation=None) -> IndexedData:
    """triples: (user, item, day) training purchases."""
    u, i, d = (np.array(x) for x in zip(*triples))
    return IndexedData(
        user_ids=[f"u{k}" for k in range(num_users)],
        item_ids=[f"i{k}" for k in range(num_items)],
        train_users=u.astype(np.int32),
        train_items=i.astype(np.int32),
        train_reviews=np.array([""] * len(u), dtype=object),
        train_times=(d * DAY).astype(np.int64),
        validation=validation or {},
        test={},
    )


def ranking(model, user: int) -> list[int]:
    return np.argsort(-model.score(np.array([user])), axis=1, kind="stable")[0].tolist()


# Users 0-1 buy item 1 three times each, users 2-4 buy item 2 once, user 5 buys item 3 on the last day.
SMALL = make_data(
    [
        (0, 1, 0),
        (0, 1, 1),
        (0, 1, 2),
        (1, 1, 0),
        (1, 1, 1),
        (1, 1, 2),
        (2, 2, 5),
        (3, 2, 5),
        (4, 2, 5),
        (5, 3, 100),
        (5, 0, 10),
        (5, 3, 3),
    ],
    6,
    5,
)


def test_registry_builds_every_baseline_and_names_match():
    assert set(BASELINES) == {
        "popularity_buyers",
        "recent_popularity",
        "repurchase",
        "als",
        "item_knn",
        "visual_profile",
        "cornac_bpr",
        "cornac_vbpr",
        "cornac_item_knn",
        "cornac_wmf",
    }
    for name, factory in BASELINES.items():
        model = factory(features=np.eye(5, dtype=np.float32)) if name in VISUAL else factory()
        assert model.name == name
    with pytest.raises(ValueError, match="choose one of"):
        build_baseline("nope")


def test_popularity_variants():
    assert ranking(Popularity().fit(SMALL), 0)[:2] == [1, 2]  # 6 purchases, then 3 (the protocol's own row)
    assert ranking(build_baseline("popularity_buyers").fit(SMALL), 0)[:2] == [2, 1]  # 3 buyers, then 2
    # Last training day is 100: a 7-day window holds item 3 only; the rest by all-time count.
    recent = build_baseline("recent_popularity", window_days=7).fit(SMALL)
    assert ranking(recent, 0)[:4] == [3, 1, 2, 0]
    assert recent.score(np.array([0, 1])).shape == (2, 5)
    with pytest.raises(ValueError, match="window_days"):
        build_baseline("recent_popularity", window_days=0)


def test_repurchase_own_items_first_by_recency_or_frequency():
    rec = build_baseline("repurchase", half_life_days=1.0).fit(SMALL)
    assert ranking(rec, 5)[:3] == [3, 0, 1]  # last bought (day 100) first, then day 10, then popularity
    freq = build_baseline("repurchase", half_life_days=None).fit(SMALL)
    data = make_data([(0, 0, 0), (0, 0, 1), (0, 2, 9), (1, 1, 0), (1, 1, 0), (1, 1, 0)], 2, 4)
    freq = freq.fit(data)
    assert ranking(freq, 0)[:3] == [0, 2, 1]  # bought twice, once, then the most popular other item
    scores = freq.score(np.array([0, 1]))
    assert scores.dtype == np.float32 and scores.shape == (2, 4)


def test_item_knn_recommends_the_co_bought_item():
    data = make_data([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (2, 0, 0), (3, 2, 0), (3, 3, 0), (3, 3, 1)], 4, 5)
    knn = build_baseline("item_knn").fit(data)
    assert ranking(knn, 2)[0] == 1  # bought with item 0 by users 0 and 1
    assert knn.score(np.array([2]))[0, 0] < knn.score(np.array([2]))[0, 1]  # no self-similarity
    assert ranking(knn, 2)[1:] == [0, 3, 2, 4]  # score 0 (no self-similarity): by count 3, 2, 1, 0
    with_self = build_baseline("item_knn", include_self=True).fit(data)
    assert ranking(with_self, 2)[:2] == [0, 1]  # own item scores s_00 = 1 > s_01


def block_data(seed: int = 0, users: int = 40, items: int = 40, cold_per_block: int = 0):
    """Two blocks: users of block b buy 8 of the warm items of block b in training, 4 other ones in
    validation. Items [0, items) are warm (first half block 0); cold items follow, alternating blocks."""
    rng = np.random.default_rng(seed)
    half = items // 2
    triples, validation = [], {}
    for u in range(users):
        block = np.arange(half) + (u % 2) * half
        chosen = rng.choice(block, 12, replace=False)
        triples += [(u, int(i), int(rng.integers(0, 50))) for i in chosen[:8]]
        validation[u] = {int(i) for i in chosen[8:]}
    return make_data(triples, users, items + 2 * cold_per_block, validation)


def recall_at_10(model, data: IndexedData) -> float:
    """Seen items masked here, so the test asks whether a model ranks the unseen block items."""
    return evaluate_users(model, data.validation, ks=(10,), mask=data.seen(), depth=10).means()["recall@10"]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("als", dict(factors=8, iterations=10, alpha=10.0)),
        ("item_knn", {}),
        ("cornac_bpr", dict(k=8, max_iter=300, learning_rate=0.05)),
        ("cornac_item_knn", dict(k=20)),
        ("cornac_wmf", dict(k=8, max_iter=200, learning_rate=0.01, batch_size=8)),
    ],
)
def test_collaborative_models_find_the_planted_blocks(name, kwargs):
    data = block_data()
    # Random ranking of the 32 unseen items: recall@10 about 10/32; the 12 unseen block items: ~0.8.
    assert recall_at_10(build_baseline(name, **kwargs).fit(data), data) > 0.6


def test_als_conjugate_gradient_reaches_the_exact_solution():
    data = block_data(users=10)
    C = user_item_matrix(data).astype(np.float64)
    C.data = 1.0 + 5.0 * C.data
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((data.num_items, 4))
    X = _cg_half_step(np.zeros((data.num_users, 4)), Y, C, 0.1, steps=20)
    for u in range(data.num_users):
        bought = C[u].toarray().ravel() > 0  # p_u
        c = np.where(bought, C[u].toarray().ravel(), 1.0)  # confidence 1 off the purchases
        A = Y.T @ (c[:, None] * Y) + 0.1 * np.eye(4)  # Y' C_u Y + reg I
        np.testing.assert_allclose(X[u], np.linalg.solve(A, Y.T @ (c * bought)), rtol=1e-6, atol=1e-8)


def visual_block_features(data: IndexedData, seed: int = 0) -> np.ndarray:
    """Item vectors [N, 8]: warm items of block b and cold items at odd/even positions share a look."""
    rng = np.random.default_rng(seed)
    warm = 40
    block = np.r_[np.arange(warm) >= warm // 2, np.arange(data.num_items - warm) % 2 == 1].astype(int)
    centres = np.array([[3, 0, 0, 0, 0, 0, 0, 0], [0, 3, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    return (centres[block] + 0.3 * rng.standard_normal((data.num_items, 8))).astype(np.float32)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("cornac_vbpr", dict(k=8, k2=8, n_epochs=15, batch_size=32, learning_rate=0.02)),
        ("visual_profile", {}),
    ],
)
def test_visual_models_rank_cold_items_of_the_users_look(name, kwargs):
    data = block_data(cold_per_block=5)
    features = visual_block_features(data)
    model = build_baseline(name, features=features, **kwargs).fit(data)
    scores = model.score(np.arange(data.num_users))  # [U, N]
    assert scores.shape == (data.num_users, data.num_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    cold = np.arange(40, data.num_items)
    same_look = (cold % 2 == 1)[None, :] == (np.arange(data.num_users) % 2 == 1)[:, None]  # [U, cold]
    mine, other = scores[:, cold][same_look].mean(), scores[:, cold][~same_look].mean()
    assert mine > other
    # Random: 10/34 of the unseen items; the 12 unseen warm + 10 cold items of the block: 10/22.
    assert recall_at_10(model, data) > 0.4


def test_visual_profile_ranks_the_visually_nearest_item_first():
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1], [0, 0.1, 1]], dtype=np.float32)
    data = make_data([(0, 3, 0), (1, 0, 0)], 2, 5)
    model = build_baseline("visual_profile", features=vectors, center=False).fit(data)
    assert ranking(model, 0)[:2] == [3, 4] and ranking(model, 1)[:2] == [0, 1]
    with pytest.raises(ValueError, match="same item order"):
        build_baseline("visual_profile", features=vectors[:4]).fit(data)


def test_cornac_wrappers_score_the_whole_catalog_in_our_order():
    data = block_data(cold_per_block=3)  # 6 items cornac never sees
    bpr = build_baseline("cornac_bpr", k=4, max_iter=20).fit(data)
    scores = bpr.score(np.array([3, 0]))
    assert scores.shape == (2, data.num_items)
    np.testing.assert_array_equal(scores[:, 40:], np.repeat(scores[:, :40].min(1, keepdims=True), 6, axis=1))
    # Our user 3 / item 7 are cornac's user 3 / item k where item 7 is the k-th warm item.
    k = int(np.searchsorted(bpr.warm, 7))
    assert scores[0, 7] == pytest.approx(float(bpr.model.score(3, k)), rel=1e-5)
    for name in ("cornac_item_knn", "cornac_wmf"):  # the same id maps and fill for the other wrappers
        model = build_baseline(name, **({"max_iter": 5} if name == "cornac_wmf" else {})).fit(data)
        row = model.score(np.array([3]))[0]
        assert row.shape == (data.num_items,) and (row[40:] == row[:40].min()).all()
        assert row[7] == pytest.approx(float(model.model.score(3, int(np.searchsorted(model.warm, 7)))), rel=1e-5)
    vbpr = build_baseline("cornac_vbpr", features=visual_block_features(data), k=4, k2=4, n_epochs=2).fit(data)
    m, f = vbpr.model, vbpr.features
    expected_cold = m.theta_user[0] @ (f[41] @ m.emb_matrix) + f[41] @ m.beta_prime.ravel()
    assert vbpr.score(np.array([0]))[0, 41] == pytest.approx(float(expected_cold), rel=1e-4)


def test_recency_weights_halve_every_half_life_and_are_off_at_none_or_zero():
    from offline.data.indexed import recency_weights

    times = np.array([0, 10, 20]) * DAY
    np.testing.assert_allclose(recency_weights(times, 10.0), [0.25, 0.5, 1.0])
    for off in (None, 0, 0.0):
        assert recency_weights(times, off).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="half_life_days"):
        recency_weights(times, -1.0)
