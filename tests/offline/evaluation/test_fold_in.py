"""Shoppers the model never saw, in offline evaluation (`offline.evaluation.fold_in`): the customer folds,
the data without them, their histories, and their rankings, which are the export's for the same history."""

from __future__ import annotations

import numpy as np
import pytest

from offline.data.indexed import IndexedData
from offline.evaluation.fold_in import FoldedIn, customer_folds, histories, without_users
from offline.features.regions import load_features
from offline.recommenders.vecf import VECFRecommender

K = 10


def _data() -> IndexedData:
    # user 0 buys 3, 1, 1 (two at time 5: file order), user 1 buys 2, user 2 nothing before the test
    return IndexedData(
        user_ids=["a", "b", "c", "d", "e"],
        item_ids=[f"i{n}" for n in range(6)],
        train_users=np.array([0, 1, 0, 0, 3, 4], np.int32),
        train_items=np.array([1, 2, 3, 1, 0, 5], np.int32),
        train_reviews=np.array(["x"] * 6, dtype=object),
        train_times=np.array([5, 1, 2, 5, 3, 4], np.int64),
        validation={0: {4}, 1: {4}, 3: {2}},
        test={0: {5}, 1: {0}, 2: {1}, 3: {4}, 4: {3}},
    )


def test_customer_folds_part_the_test_customers() -> None:
    data = _data()
    folds = customer_folds(data, 2, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == sorted(data.test)  # every test customer once
    assert sorted(len(f) for f in folds) == [2, 3] and all((np.diff(f) > 0).all() for f in folds)
    assert [f.tolist() for f in customer_folds(data, 2, seed=0)] == [f.tolist() for f in folds]  # seeded
    with pytest.raises(ValueError, match="folds"):
        customer_folds(data, 1, seed=0)


def test_without_users_hides_their_purchases_but_keeps_their_test_window() -> None:
    data, gone = _data(), np.array([0, 3])
    left = without_users(data, gone)
    assert not np.isin(left.train_users, gone).any()
    assert len(left.train_users) == len(left.train_items) == len(left.train_reviews) == len(left.train_times) == 2
    assert set(left.validation) == {1} and left.test == data.test and left.user_ids == data.user_ids


def test_histories_are_the_training_purchases_oldest_first() -> None:
    rows = histories(_data(), np.array([0, 1, 2]))
    assert rows.tolist() == [[3, 1, 1], [2, -1, -1], [-1, -1, -1]]


def test_offline_fold_in_ranks_as_the_exports_history_signature(tiny_work) -> None:
    import tensorflow as tf

    rec = VECFRecommender.load(tiny_work / "runs" / "vecf", load_features(tiny_work / "features"))
    module = tf.saved_model.load(str(tiny_work / "export" / "1"))
    ids = [line for line in (tiny_work / "runs" / "vecf" / "items.txt").read_text().split("\n") if line]
    rng = np.random.default_rng(0)
    history = -np.ones((6, 5), np.int32)
    for u, n in enumerate((1, 2, 3, 5, 5, 4)):
        history[u, :n] = rng.choice(np.flatnonzero(rec.warm), n)  # items with purchases, some repeated
    history[4, 3:] = history[4, 0]
    served = module.signatures["history_embedding"](
        history=tf.constant([[ids[i] if i >= 0 else "" for i in row] for row in history])
    )["embedding"]
    np.testing.assert_allclose(rec.history_states(history), served.numpy(), rtol=1e-4, atol=1e-4)
    # FoldedIn scores each customer by the ranking the export serves that history
    folded = FoldedIn(rec, history, np.arange(10, 16)).score(np.arange(10, 16))
    top = module.signatures["recommend"](embedding=served, k=tf.constant(K))["item_ids"].numpy()
    row = {item: n for n, item in enumerate(ids)}
    np.testing.assert_array_equal(
        np.argsort(-folded, axis=1, kind="stable")[:, :K], [[row[i.decode()] for i in t] for t in top]
    )
