"""New-item slots: the scorer's tables (offline.recommenders.newitems), new_score and the slot order by hand
(model.ranking), and the exported rankings, which must place exactly what the offline evaluation ranks."""

from __future__ import annotations

import numpy as np
import pytest

from model import ranking
from offline.data.indexed import IndexedData
from offline.recommenders.newitems import NEW_ITEM_PICKS, TREND_WEIGHT, VISUAL_WEIGHT, NewItemScorer
from offline.recommenders.ranking_tables import serving_tables
from offline.recommenders.repeats import REPEAT_SLOTS, RepeatTable
from tests.offline.small_models import boosted_by_hand
from tests.offline.small_models import exported as exported_model


def indexed(users, items, times, num_users: int, num_items: int) -> IndexedData:
    return IndexedData(
        user_ids=[f"u{n}" for n in range(num_users)],
        item_ids=[f"i{n}" for n in range(num_items)],
        train_users=np.array(users, np.int32),
        train_items=np.array(items, np.int32),
        train_reviews=np.array([""] * len(users), dtype=object),
        train_times=np.array(times, np.int64),
        validation={},
        test={},
    )


def test_interleave_orders_the_catalog_with_new_items_in_their_slots() -> None:
    # items 1 and 4 are new; new_score prefers 4 over 1 (trend), the others rank by score
    scorer = NewItemScorer(
        new=np.array([0, 1, 0, 0, 1, 0], bool),
        vectors=np.zeros((6, 2), np.float32),
        codes=np.zeros((6, 0), np.int32),
        sizes=np.zeros(0, np.int32),
        trend=np.array([0, 1, 0, 0, 2, 0], np.float32),
    )
    scores = np.array([[5, 9, 4, 3, 8, 6]], np.float32)  # the new items would win without slots
    tables, _ = scorer.tables()
    state = np.zeros((1, 1), np.float32)  # no history: new items by trend

    def ranked(every: int, k: int = 6) -> list[int]:
        return np.asarray(ranking.rank(tables, ranking.Layout(dim=1, every=every, new_items=True), state, scores, k))[
            0
        ].tolist()

    assert ranked(3) == [5, 0, 4, 2, 3, 1]  # places 2 and 5 hold the new items, best first
    assert ranked(3, k=3) == [5, 0, 4]  # a top-k is a prefix of the whole order
    assert ranked(0) == [1, 4, 5, 0, 2, 3]
    with pytest.raises(ValueError, match="new_item_every"):
        ranked(1)
    # more new places than new items: the rest of the ranking simply follows
    assert ranked(2) == [5, 4, 0, 1, 2, 3]


def test_new_score_by_hand() -> None:
    """Visual cosine with the history's mean direction, attribute shares (a missing value is a value),
    the trend; a user without history gets the trend alone."""
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8], [0, 1]], np.float32)
    codes = np.array([[0], [1], [0], [1], [2]], np.int32)  # e.g. product type; code 2 = missing
    scorer = NewItemScorer(
        new=np.array([0, 0, 0, 1, 1], bool),
        vectors=vectors,
        codes=codes,
        sizes=np.array([3], np.int32),
        trend=np.array([0, 0, 0, 0.5, 1.0], np.float32),
    )
    tables, values = scorer.tables()
    layout = ranking.Layout(dim=1, slots=3, every=2, attribute_values=values, new_items=True)
    rows = np.array([[0, 1, -1], [-1, -1, -1]], np.int32)  # user a bought items 0 and 1; user b nothing
    out = np.asarray(ranking.new_item_scores(tables, layout, rows, 2))  # [2, new items 3 and 4]
    profile = np.array([1, 1]) / np.sqrt(2)
    expected_a = VISUAL_WEIGHT * vectors @ profile + TREND_WEIGHT * scorer.trend + np.array([0.5, 0.5, 0.5, 0.5, 0])
    np.testing.assert_allclose(out[0], expected_a[[3, 4]], rtol=1e-6)
    np.testing.assert_allclose(out[1], TREND_WEIGHT * scorer.trend[[3, 4]], rtol=1e-6)


def test_build_marks_new_items_and_gives_them_the_trend_of_their_look_alikes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("offline.recommenders.newitems.TREND_NEIGHBOURS", 2)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(2, 8)).astype(np.float32)
    features = np.concatenate(
        [
            base[[0]] + 0.01 * rng.normal(size=(3, 8)),  # items 0-2 look alike
            base[[1]] + 0.01 * rng.normal(size=(3, 8)),
        ]
    ).astype(np.float32)  # items 3-5
    day = 86400
    # items 0 and 1 sell recently (0 twice), item 3 long ago, item 4 once recently; items 2 and 5 are new
    data = indexed(
        [0, 1, 1, 0, 2], [0, 0, 1, 3, 4], [100 * day, 99 * day, 98 * day, 1 * day, 60 * day], num_users=3, num_items=6
    )
    attributes = {"product_type": ["a", "a", "b", "", "", "c"], "colour": ["x"] * 6}  # colour is not read
    scorer = NewItemScorer.build(data, features, attributes)
    assert scorer.new.tolist() == [False, False, True, False, False, True]
    assert scorer.num_new == 2 and scorer.vectors.shape[0] == 6 and scorer.codes.shape == (6, 1)
    np.testing.assert_allclose(np.linalg.norm(scorer.vectors, axis=1), 1.0, rtol=1e-5)
    assert scorer.codes[:, 0].tolist() == [1, 1, 2, 0, 0, 3] and scorer.sizes.tolist() == [4]  # '' sorts first
    assert (scorer.trend[~scorer.new] == 0).all()
    # the 2 nearest items with purchases: 0 and 1 (3 recent sales) for item 2, 3 and 4 (1) for item 5
    np.testing.assert_allclose(scorer.trend[[2, 5]], [(np.log1p(2) + np.log1p(1)) / 2, np.log1p(1) / 2], rtol=1e-6)
    scorer.save(tmp_path / "n.npz")
    again = NewItemScorer.load(tmp_path / "n.npz")
    np.testing.assert_array_equal(again.trend, scorer.trend)
    with pytest.raises(ValueError, match="product_type"):
        NewItemScorer.build(data, features, {"product_type": ["a"]})


def exported(every: int, unit: float = 0.0, picks: int = NEW_ITEM_PICKS, with_repeats: bool = True):
    # user 0 bought items 5 and 2, user 3 item 7; items 0, 4 and 8 were never bought
    repeats = RepeatTable.build(np.array([0, 0, 3]), np.array([5, 2, 7]), np.array([1, 2, 3]), num_users=6)
    repeats = repeats if with_repeats else None
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(9, 3)).astype(np.float32)
    scorer = NewItemScorer(
        new=np.isin(np.arange(9), [0, 4, 8]),
        vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
        codes=rng.integers(0, 3, size=(9, 2)).astype(np.int32),
        sizes=np.array([3, 3], np.int32),
        trend=np.where(np.isin(np.arange(9), [0, 4, 8]), rng.random(9), 0).astype(np.float32),
    )
    model, module, users, items, repeats = exported_model(
        unit, repeats, new_items=scorer, new_item_every=every, new_item_picks=picks
    )  # random_vecf: 6 users, 9 items
    return model, module, users, items, repeats, scorer


@pytest.mark.parametrize("every,unit,picks", [(3, 0.0, NEW_ITEM_PICKS), (2, 4.0, NEW_ITEM_PICKS), (2, 4.0, 1)])
def test_exported_rankings_place_what_the_offline_scoring_ranks(every: int, unit: float, picks: int) -> None:
    """For every k, both ranking signatures return the prefix of the order VECFRecommender's scoring
    gives (slots by new_score, the rest by VECF's score plus the boost), with the model's own scores;
    with picks=1 the slots of k >= 2 * every are ranked in the request, not read from the state."""
    import tensorflow as tf

    model, module, users, items, repeats, scorer = exported(every, unit, picks)
    assert module.repeat_slots == REPEAT_SLOTS and module.new_item_every == every  # history travels even at unit 0
    region_proj, value_proj = model.catalog_tables()
    raw, _ = model.score_tables(
        np.asarray(model.user_embedding), model.item_embedding, model.item_bias, region_proj, value_proj, pairwise=False
    )
    boosted = boosted_by_hand(np.asarray(raw), repeats, unit)  # [U, N]
    # the offline evaluation's path: model.ranking on the numpy tables VECFRecommender builds
    tables, layout = serving_tables(np.asarray(model.user_embedding), len(items), repeats, unit, scorer, every, picks)
    offline_state, _ = ranking.user_state(tables, layout, np.arange(len(users)))
    order = np.asarray(ranking.rank(tables, layout, offline_state, boosted, len(items)))  # [U, N]
    state = module.user_embedding(tf.constant(users))["embedding"]
    n = len(items)
    for k in (1, 3, 5, n):
        for top in (
            module.recommend(state, tf.constant(k)),
            module.recommend_candidates(state, tf.constant(k), tf.constant(n)),
        ):
            ids = np.vectorize(lambda b: int(b.decode()[1:]))(top["item_ids"].numpy())
            np.testing.assert_array_equal(ids, order[:, :k])
            np.testing.assert_allclose(top["scores"].numpy(), np.take_along_axis(boosted, ids, 1), rtol=1e-5, atol=1e-5)
            grids = top["attention"].numpy()
            assert grids.shape == (len(users), k, 2, 2)
            np.testing.assert_allclose(grids.reshape(len(users), k, -1).sum(-1), 1.0, rtol=1e-5)
        # with k candidates stage 1 approximates the places ranked by score, but not the slots
        few = module.recommend_candidates(state, tf.constant(k), tf.constant(k))["item_ids"].numpy()
        slot = np.arange(k) % every == every - 1
        np.testing.assert_array_equal(np.vectorize(lambda b: int(b.decode()[1:]))(few)[:, slot], order[:, :k][:, slot])
    new_places = np.isin(order[:, :n], [0, 4, 8])
    assert new_places[:, every - 1].all()  # the first slot holds a new item for everyone
    if every == 3:
        assert (new_places[:, [2, 5, 8]]).all() and new_places.sum() == 3 * len(users)


def test_a_stranger_gets_new_items_by_trend() -> None:
    import tensorflow as tf

    *_, module, users, items, repeats, scorer = exported(3)
    state = module.user_embedding(tf.constant(["nobody"]))["embedding"]
    ids = [b.decode() for b in module.recommend(state, tf.constant(9))["item_ids"].numpy()[0]]
    by_trend = [f"i{i}" for i in np.argsort(-scorer.trend)[:3]]
    assert [ids[2], ids[5], ids[8]] == by_trend


def test_user_state_carries_each_users_best_new_items() -> None:
    import tensorflow as tf

    from model import contract

    model, module, users, items, repeats, scorer = exported(3)
    assert module.new_item_picks == 3  # min(NEW_ITEM_PICKS, the 3 new items)
    state = module.user_embedding(tf.constant([*users, "nobody"]))["embedding"].numpy()
    assert state.shape == (len(users) + 1, model.dim + 2 * REPEAT_SLOTS + 3)
    tables, values = scorer.tables()
    layout = ranking.Layout(dim=model.dim, slots=REPEAT_SLOTS, every=3, attribute_values=values, new_items=True)
    rows = np.full((len(users) + 1, REPEAT_SLOTS), -1, np.int32)
    for u in range(len(users)):  # each user's purchases, newest first
        bought = repeats.items[repeats.offsets[u] : repeats.offsets[u + 1]]
        rows[u, : len(bought)] = bought
    fresh = np.asarray(ranking.new_item_scores(tables, layout, rows, len(rows)))  # [U + 1, new items]
    expected = tables["new_rows"][np.argsort(-fresh, axis=1, kind="stable")[:, :3]]
    np.testing.assert_array_equal(contract.new_item_picks(state, model.dim, REPEAT_SLOTS, 3), expected)


def test_without_a_purchase_history_the_state_carries_the_picks_alone() -> None:
    """A model without repeat rows (no boost, no purchases kept) still has slots: filled by trend."""
    import tensorflow as tf

    model, module, users, items, _, scorer = exported(3, with_repeats=False)
    assert module.repeat_slots == 0 and module.new_item_picks == 3
    state = module.user_embedding(tf.constant(users))["embedding"]
    assert state.shape == (len(users), model.dim + 3)
    by_trend = [f"i{i}".encode() for i in np.argsort(-scorer.trend)[:3]]
    for top in (
        module.recommend(state, tf.constant(9)),
        module.recommend_candidates(state, tf.constant(9), tf.constant(9)),
    ):
        ids = top["item_ids"].numpy()
        assert all(row[[2, 5, 8]].tolist() == by_trend for row in ids)
