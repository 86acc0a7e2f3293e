"""Fold-in (model.foldin): a history's repeat slots are what the repeat table gives a trained user, and
the folded-in vector minimises the loss it says it minimises, over the scores the model gives with
uniform attention."""

from __future__ import annotations

import numpy as np
from keras import ops

from model.foldin import FOLD_IN_L2, FOLD_IN_STEPS, fold_in, history_slots, item_vectors
from offline.recommenders.repeats import RepeatTable
from tests.offline.small_models import random_vecf


def test_history_slots_are_the_repeat_tables_newest_distinct_items() -> None:
    histories = [[3, 1, 3, 7, 1, 1, 4], [5, -1, -1, -1, -1, -1, -1], [-1] * 7]
    rows, boosts = (np.asarray(a) for a in history_slots(np.array(histories), 4, 2.0))
    users = np.array([u for u, h in enumerate(histories) for i in h if i >= 0])
    items = np.array([i for h in histories for i in h if i >= 0])
    times = np.array([t for h in histories for t, i in enumerate(h) if i >= 0])  # position = time
    table = RepeatTable.build(users, items, times, num_users=3, slots=4)
    for u in range(3):
        own = table.items[table.offsets[u] : table.offsets[u + 1]]
        assert rows[u][rows[u] >= 0].tolist() == own.tolist()
        np.testing.assert_allclose(boosts[u][: len(own)], table.boosts(2.0)[table.offsets[u] : table.offsets[u + 1]])
        assert (boosts[u][len(own) :] == 0).all() and (rows[u][len(own) :] == -1).all()
    assert rows[0].tolist() == [4, 1, 7, 3]  # newest first; 1 bought three times
    np.testing.assert_allclose(boosts[0], 2.0 * np.log1p([1, 3, 1, 2]), rtol=1e-6)
    short, _ = history_slots(np.array([[2, 2]]), 3, 1.0)  # shorter than the slots: padded
    assert np.asarray(short).tolist() == [[2, -1, -1]]


def _loss(vectors: np.ndarray, p: np.ndarray, history: list[int], negatives: np.ndarray, l2: float) -> float:
    scores = vectors[:, :-1] @ p + vectors[:, -1]  # [N]
    diff = scores[None, :] - scores[history][:, None]  # [L, N]
    terms = np.logaddexp(0.0, diff) * negatives[None]
    return float(terms.sum() / (len(history) * negatives.sum()) + l2 * np.sum(p**2))


def test_fold_in_minimises_the_loss_it_says_it_minimises() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(9, 4)).astype(np.float32)  # D = 3, and the bias column
    negatives = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0], np.float32)
    history = [2, 5, 5, 0]
    for l2 in (0.01, FOLD_IN_L2):
        p = np.asarray(fold_in(vectors, np.array([history + [-1, -1]]), negatives, l2))[0].astype(np.float64)
        best = _loss(vectors, p, history, negatives, l2)
        for _ in range(30):  # no nearby point does better
            step = rng.normal(size=p.shape) * 1e-2
            assert _loss(vectors, p + step, history, negatives, l2) > best - 1e-9
        assert best < _loss(vectors, np.zeros(3), history, negatives, l2) - 1e-4  # and it moved from 0
    # the history's items move up against the others
    scores = vectors[:, :-1] @ p + vectors[:, -1]
    before = vectors[:, -1]
    gain = scores[history].mean() - np.delete(scores, history).mean()
    assert gain > before[history].mean() - np.delete(before, history).mean()
    # a history with no known item folds into p = 0, as an unknown user; a stronger ridge, a shorter p
    empty = np.asarray(fold_in(vectors, -np.ones((1, 3), np.int32), negatives))
    assert np.abs(empty).max() == 0
    weak = np.asarray(fold_in(vectors, np.array([history]), negatives, 0.01))[0]
    assert np.linalg.norm(p) < np.linalg.norm(weak)


def test_fold_in_has_converged_after_its_steps() -> None:
    """One more Newton step leaves p where it is, for histories of 1 to 30 items over unit-scale vectors
    (larger than a trained model's). One step is not enough, so this checks something."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 33)).astype(np.float32)
    negatives = (rng.random(500) < 0.8).astype(np.float32)
    history = np.full((6, 30), -1)
    for b, n in enumerate((1, 2, 5, 10, 20, 30)):
        history[b, -n:] = rng.integers(0, 500, n)
    p = np.asarray(fold_in(vectors, history, negatives))
    assert np.abs(np.asarray(fold_in(vectors, history, negatives, steps=FOLD_IN_STEPS + 1)) - p).max() < 1e-6
    assert np.abs(np.asarray(fold_in(vectors, history, negatives, steps=1)) - p).max() > 1e-4


def test_item_vectors_score_as_the_model_does_with_uniform_attention() -> None:
    model = random_vecf(use_attention=False)
    region_proj, value_proj = model.catalog_tables()
    side = (model.item_embedding, model.item_bias, model.attention.split_regions(region_proj), value_proj)
    users = np.random.default_rng(1).normal(size=(4, model.dim)).astype(np.float32)
    exact = np.asarray(model.score_catalog(ops.convert_to_tensor(users), *side)[0])
    vectors = np.asarray(item_vectors(model.item_embedding, model.item_bias, value_proj))
    np.testing.assert_allclose(np.concatenate([users, np.ones((4, 1))], 1) @ vectors.T, exact, rtol=1e-5, atol=1e-5)
