"""Shelves (`model.contract.SHELVES`): the export serves each as offline evaluation ranks it, and each holds
what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from model.contract import SHELVES
from offline.features.regions import load_features
from offline.recommenders.vecf import VECFRecommender

K = 12


@pytest.fixture(scope="module")
def served(tiny_work):
    import tensorflow as tf

    rec = VECFRecommender.load(tiny_work / "runs" / "vecf", load_features(tiny_work / "features"))
    module = tf.saved_model.load(str(tiny_work / "export" / "1"))
    ids = [line for line in (tiny_work / "runs" / "vecf" / "items.txt").read_text().split("\n") if line]
    users = [line for line in (tiny_work / "runs" / "vecf" / "users.txt").read_text().split("\n") if line]
    return rec, module, ids, users


def _rows(module, ids: list[str], users: list[str], shelf: str, candidates: int) -> np.ndarray:
    import tensorflow as tf

    state = module.signatures["user_embedding"](user_id=tf.constant(users))["embedding"]
    out = module.signatures["recommend_shelf"](
        embedding=state,
        k=tf.constant(K),
        candidates=tf.constant(candidates),
        shelf=tf.constant(SHELVES.index(shelf)),
    )
    row = {item: n for n, item in enumerate(ids)}
    return np.array([[row.get(i.decode(), -1) for i in items] for items in out["item_ids"].numpy()])


@pytest.mark.parametrize("shelf", SHELVES)
def test_the_export_serves_each_shelf_as_offline_evaluation_ranks_it(served, shelf: str) -> None:
    rec, module, ids, users = served
    rows = rec.shelf_rows(np.arange(len(users)), shelf, K)
    np.testing.assert_array_equal(_rows(module, ids, users, shelf, 0), rows)
    if shelf in ("all", "for_you"):  # two stages with every item a candidate: the exact ranking
        np.testing.assert_array_equal(_rows(module, ids, users, shelf, len(ids)), rows)


def test_each_shelf_holds_what_its_name_says(served) -> None:
    rec, _, _, users = served
    everyone = np.arange(len(users))
    bought = [set(rec.repeats.items[rec.repeats.offsets[u] : rec.repeats.offsets[u + 1]].tolist()) for u in everyone]
    again, mine, fresh = (rec.shelf_rows(everyone, s, K) for s in ("buy_again", "for_you", "new_for_you"))
    new = rec.new_items.new
    assert new.any() and any(bought)  # the tiny shop has both, so the checks below are not vacuous
    for u in everyone:
        assert set(again[u][again[u] >= 0].tolist()) == set(list(bought[u])[:K]) or len(bought[u]) > K
        assert (again[u] >= 0).sum() == min(K, len(bought[u]))
        assert not bought[u] & set(mine[u].tolist()) and (mine[u] >= 0).all()
        assert new[fresh[u][fresh[u] >= 0]].all() and (fresh[u] >= 0).sum() == min(K, int(new.sum()))
    # re-buys come in the model's order: VECF's score plus the boost, best first
    scores = rec.score(everyone)
    for u in everyone:
        shown = again[u][again[u] >= 0]
        assert (np.diff(scores[u][shown]) <= 1e-6).all()
