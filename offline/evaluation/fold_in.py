"""Shoppers the model never saw: a share of the test customers is left out of training, folded in from
their purchases before the test window (`model.foldin`, as the export's history signature does) and
scored on the test window like everyone else; in turn, so that every test customer is folded in once.
Paired with the same customers' figures from a model trained with them, and with popularity's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from offline.data.indexed import IndexedData


def customer_folds(data: IndexedData, folds: int, seed: int) -> list[np.ndarray]:
    """The test customers in `folds` disjoint random parts of (nearly) equal size (user rows, each sorted):
    leaving each out once folds every test customer in once, a 1 / folds share at a time."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    users = np.random.default_rng(seed).permutation(np.array(sorted(data.test), dtype=np.int64))
    return [np.sort(users[f::folds]) for f in range(folds)]


def without_users(data: IndexedData, users: np.ndarray) -> IndexedData:
    """`data` with every training and validation interaction of `users` removed: their rows stay (ids keep
    their index) but the model never sees them buy; their test window is kept to score them on."""
    drop = np.isin(data.train_users, users)
    gone = set(users.tolist())
    return replace(
        data,
        train_users=data.train_users[~drop],
        train_items=data.train_items[~drop],
        train_reviews=data.train_reviews[~drop],
        train_times=data.train_times[~drop],
        validation={u: v for u, v in data.validation.items() if u not in gone},
    )


def histories(data: IndexedData, users: np.ndarray) -> np.ndarray:
    """[U, L] catalog rows of each user's training purchases, oldest first (ties in file order), -1 padded."""
    order = np.lexsort((np.arange(len(data.train_users)), data.train_times))
    rows = {int(u): [] for u in users}
    for u, i in zip(data.train_users[order].tolist(), data.train_items[order].tolist()):
        if u in rows:
            rows[u].append(i)
    out = -np.ones((len(users), max(1, max(len(r) for r in rows.values()))), np.int32)
    for k, u in enumerate(users.tolist()):
        out[k, : len(rows[u])] = rows[u]
    return out


class FoldedIn:
    """A Recommender for held-out users: each ranked from the state its history folds into."""

    def __init__(self, model, history: np.ndarray, users: np.ndarray):
        """`model`: a fitted VECFRecommender (trained without them); history [U, L] of `users`."""
        self.model, self.name = model, f"{model.name} folded in"
        self.row = {int(u): k for k, u in enumerate(users)}
        self.history = history

    def fit(self, data: IndexedData) -> FoldedIn:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        rows = self.history[[self.row[int(u)] for u in users]]
        width = max(1, int((rows >= 0).sum(1).max()))  # the batch's longest history, not the longest of all
        return self.model.history_score(rows[:, :width])
