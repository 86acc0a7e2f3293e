"""Non-personalised baselines: one list for everyone, from training purchases only."""

from __future__ import annotations

import numpy as np

from offline.data.indexed import IndexedData
from offline.recommenders.baselines._common import DAY, check_users


class Popularity:
    """Items ranked by training interaction count, the same list for everyone."""

    name = "popularity"

    def fit(self, data: IndexedData) -> Popularity:
        self.counts = data.item_counts().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))


class _SameForEveryone:
    """Scores [N] float32 set by `fit`, broadcast to every user."""

    name = "same_for_everyone"
    counts: np.ndarray
    num_users: int

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, self.num_users)
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))


class PopularityBuyers(_SameForEveryone):
    """Items by the number of distinct training customers who bought them."""

    name = "popularity_buyers"

    def fit(self, data: IndexedData) -> PopularityBuyers:
        pairs = np.unique(np.stack([data.train_users, data.train_items], 1), axis=0)  # [P, 2]
        self.counts = np.bincount(pairs[:, 1], minlength=data.num_items).astype(np.float32)
        self.num_users = data.num_users
        return self


class RecentPopularity(_SameForEveryone):
    """Items by purchases in the last `window_days` of training (counted back from the last training
    timestamp); ties, including all items not bought in the window, broken by all-time count."""

    name = "recent_popularity"

    def __init__(self, window_days: float = 14.0) -> None:
        if window_days <= 0:
            raise ValueError(f"window_days must be positive, got {window_days}")
        self.window_days = window_days

    def fit(self, data: IndexedData) -> RecentPopularity:
        recent = data.train_times > data.train_times.max() - self.window_days * DAY  # [n] bool
        window = np.bincount(data.train_items[recent], minlength=data.num_items).astype(np.float64)
        total = data.item_counts().astype(np.float64)
        # All-time count scaled below one recent purchase: it only orders items with equal window counts.
        self.counts = (window + total / (total.max() + 1.0)).astype(np.float32)
        self.num_users = data.num_users
        return self
