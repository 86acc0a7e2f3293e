"""The repeat-purchase boost: the per-user table (offline.recommenders.repeats), the boost as `model.ranking`
applies it, and the exported SavedModel functions that carry it in the user state."""

from __future__ import annotations

import numpy as np
import pytest

from offline.recommenders.repeats import REPEAT_SLOTS, RepeatTable
from tests.offline.small_models import boosted_by_hand, exported

# user 0 bought item 2 twice (t=1, t=5) and item 0 once (t=3); user 2 bought item 1 (t=2); user 1 nothing.
USERS = np.array([0, 0, 2, 0])
ITEMS = np.array([2, 0, 1, 2])
TIMES = np.array([1, 3, 2, 5])


def test_table_lists_each_users_distinct_items_newest_first_with_counts() -> None:
    table = RepeatTable.build(USERS, ITEMS, TIMES, num_users=3)
    assert table.offsets.tolist() == [0, 2, 2, 3]
    assert table.items.tolist() == [2, 0, 1]  # user 0: item 2 (last bought t=5) before item 0 (t=3)
    assert table.counts.tolist() == [2, 1, 1]
    np.testing.assert_allclose(table.boosts(2.0), 2.0 * np.log1p([2, 1, 1]), rtol=1e-6)


def test_table_keeps_only_the_newest_slots_per_user() -> None:
    items = np.arange(10)
    table = RepeatTable.build(np.zeros(10, int), items, times=items * 10, num_users=1, slots=4)
    assert table.items.tolist() == [9, 8, 7, 6]
    with pytest.raises(ValueError, match="slots"):
        RepeatTable.build(USERS, ITEMS, TIMES, num_users=3, slots=0)


def test_repeat_slots_and_dense_boosts_by_hand(tmp_path) -> None:
    from model import ranking

    table = RepeatTable.build(USERS, ITEMS, TIMES, num_users=3)
    tables = {"user_vectors": np.zeros((3, 2), np.float32), **table.tables(1.0)}
    layout = ranking.Layout(dim=2, slots=3)
    rows, boosts = (np.asarray(a) for a in ranking.repeat_slots(tables, layout, np.array([0, 1, -1, 2])))
    assert rows.tolist() == [[2, 0, -1], [-1, -1, -1], [-1, -1, -1], [1, -1, -1]]
    np.testing.assert_allclose(boosts[0], [np.log1p(2), np.log1p(1), 0], rtol=1e-6)
    assert (boosts[1:3] == 0).all()
    state, _ = ranking.user_state(tables | table.tables(3.0), layout, np.array([2, 0]))
    out = np.asarray(ranking.boosted_scores(np.zeros((2, 4), np.float32), state, layout))
    np.testing.assert_allclose(out, [[0, 3 * np.log1p(1), 0, 0], [3 * np.log1p(1), 0, 3 * np.log1p(2), 0]], rtol=1e-6)
    table.save(tmp_path / "r.npz")
    again = RepeatTable.load(tmp_path / "r.npz")
    assert again.offsets.tolist() == table.offsets.tolist() and again.items.tolist() == table.items.tolist()


def test_user_state_carries_the_newest_repeats_and_their_boosts() -> None:
    import tensorflow as tf

    model, module, *_ = exported(unit=0.5)
    assert module.repeat_slots == REPEAT_SLOTS
    out = module.user_embedding(tf.constant(["u0", "u1", "nobody"]))
    state, known = out["embedding"].numpy(), out["known"].numpy()
    d, h = model.dim, REPEAT_SLOTS
    assert state.shape == (3, d + 2 * h) and known.tolist() == [True, True, False]
    np.testing.assert_allclose(state[0, :d], np.asarray(model.user_embedding)[0])
    assert state[0, d : d + 3].tolist() == [5, 2, -1]  # item 5 last bought at t=4, item 2 at t=3
    np.testing.assert_allclose(state[0, d + h : d + h + 3], [0.5 * np.log1p(3), 0.5 * np.log1p(1), 0], rtol=1e-6)
    assert (state[1, d : d + h] == -1).all() and (state[1, d + h :] == 0).all()  # known, no purchases
    assert (state[2, :d] == 0).all() and (state[2, d : d + h] == -1).all() and (state[2, d + h :] == 0).all()


@pytest.mark.parametrize("clusters", [0, 6])
def test_exported_rankings_and_scores_match_the_offline_scoring_with_the_boost(clusters: int) -> None:
    """What `offline recommend` and the gateway get equals VECFRecommender.score: VECF's score plus the
    boost, for the exact ranking, the two-stage ranking with every item a candidate, and `score`."""
    import tensorflow as tf

    unit = 4.0  # large: the boosted items must move to the top, so the test sees the boost act
    model, module, users, items, repeats = exported(unit, clusters=clusters)
    region_proj, value_proj = model.catalog_tables()
    raw, _ = model.score_tables(
        np.asarray(model.user_embedding), model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False
    )
    expected = boosted_by_hand(np.asarray(raw), repeats, unit)  # [U, N]
    assert expected[0].argmax() == 5 and expected[3].argmax() == 7
    state = module.user_embedding(tf.constant(users))["embedding"]
    n = len(items)
    for top in (
        module.recommend(state, tf.constant(n)),
        module.recommend_candidates(state, tf.constant(n), tf.constant(n)),
    ):
        np.testing.assert_allclose(top["scores"].numpy(), -np.sort(-expected, axis=1), rtol=1e-5, atol=1e-5)
        ids = np.vectorize(lambda b: int(b.decode()[1:]))(top["item_ids"].numpy())
        np.testing.assert_allclose(np.take_along_axis(expected, ids, 1), top["scores"].numpy(), rtol=1e-5, atol=1e-5)
    asked = tf.constant([[i for i in items] + ["nope"]] * len(users))
    scores = module.score(state, asked)["scores"].numpy()
    np.testing.assert_allclose(scores[:, :n], expected, rtol=1e-5, atol=1e-5)
    assert np.isneginf(scores[:, n]).all()
    grids = module.attention(state, tf.constant(items[: len(users)]))["attention"].numpy()
    np.testing.assert_allclose(grids.reshape(len(users), -1).sum(1), 1.0, rtol=1e-5)


def test_few_candidates_still_reach_a_users_strongly_boosted_repeat() -> None:
    """Stage 1 adds the boosts too: with k = candidates = 1 the boosted item wins for its user."""
    import tensorflow as tf

    model, module, users, items, _ = exported(unit=100.0, clusters=0)
    state = module.user_embedding(tf.constant(["u0", "u3"]))["embedding"]
    top = module.recommend_candidates(state, tf.constant(1), tf.constant(1))["item_ids"].numpy()
    assert top[:, 0].tolist() == [b"i5", b"i7"]


def test_without_the_boost_the_state_still_carries_the_history_with_zero_boosts() -> None:
    # The shelves and "because you bought" read the history from the state, boost or not; a model without
    # purchases to remember has no slots and serves the bare embedding.
    import tensorflow as tf

    model, module, *_ = exported(0.0)
    assert module.repeat_slots == REPEAT_SLOTS
    state = module.user_embedding(tf.constant(["u0"]))["embedding"].numpy()
    d, h = model.dim, REPEAT_SLOTS
    np.testing.assert_allclose(state[:, :d], np.asarray(model.user_embedding)[:1])
    assert state[0, d : d + 3].tolist() == [5, 2, -1] and (state[0, d + h :] == 0).all()
    model, module, *_ = exported(1.0, RepeatTable.build([], [], [], num_users=6))
    assert module.repeat_slots == 0
    state = module.user_embedding(tf.constant(["u0"]))["embedding"].numpy()
    np.testing.assert_allclose(state, np.asarray(model.user_embedding)[:1])


@pytest.fixture(scope="module")
def export_base(tiny_work):
    return tiny_work / "export"


def test_gateway_says_which_recommendations_are_re_buys(export_base) -> None:
    """`repeat_boost` on /recommend and /explain is the boost the user state carries for that item, 0 for
    the others, null for a stranger's popularity list; the score minus it is VECF's own score."""
    import tensorflow as tf
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.catalog import Catalog
    from service.settings import Settings

    version = export_base / "1"
    loaded, catalog = tf.saved_model.load(str(version)), Catalog.load(version)
    d, h = catalog.meta.embedding_dim, catalog.meta.repeat_slots
    with TestClient(create_app(Settings(model_dir=export_base, redis_url=None, model_poll_s=0))) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]  # the most active user
        state = loaded.signatures["user_embedding"](user_id=tf.constant([user]))["embedding"].numpy()
        boosts = catalog.repeat_boosts(state[0])
        assert boosts and all(b > 0 for b in boosts.values())
        r = client.get("/recommend", params={"user_id": user, "k": 100})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert {i["item_id"] for i in items if i["repeat_boost"] > 0} == set(boosts)  # k = the whole catalog
        for item in items:
            assert item["repeat_boost"] == pytest.approx(boosts.get(item["item_id"], 0.0), rel=1e-6)
            assert item["source"] == ("repeat_boost" if item["item_id"] in boosts else "vecf")  # no new-item slots
        bought, other = next(iter(boosts)), next(i["item_id"] for i in items if i["item_id"] not in boosts)
        for item_id in (bought, other):
            e = client.get("/explain", params={"user_id": user, "item_id": item_id}).json()
            assert e["repeat_boost"] == pytest.approx(boosts.get(item_id, 0.0), rel=1e-6)
            assert e["source"] == ("repeat_boost" if item_id in boosts else "vecf")
            bare = np.concatenate([state[:, :d], -np.ones((1, h), np.float32), np.zeros((1, h), np.float32)], 1)
            own = loaded.signatures["score"](embedding=tf.constant(bare), item_ids=tf.constant([[item_id]]))
            assert e["score"] - e["repeat_boost"] == pytest.approx(float(own["scores"].numpy()[0, 0]), abs=1e-4)
        stranger = client.get("/recommend", params={"user_id": "nobody-at-all", "k": 3}).json()
        assert stranger["personalized"] is False and all(i["repeat_boost"] is None for i in stranger["items"])
