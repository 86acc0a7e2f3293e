"""The customer's own past purchases first, then popular items: repeat purchases are allowed."""

from __future__ import annotations

import numpy as np

from offline.data.indexed import IndexedData, recency_weights
from offline.recommenders.baselines._common import check_users, user_item_matrix


class Repurchase:
    """Own items ordered by sum over their purchases of 0.5 ** (age / half_life_days): a short
    half-life ranks the most recent purchase first, None ranks by purchase count (frequency).
    Ties in that weight go to the more popular item; every other item follows, by training count.

    Scores [B, N] float32: own items in (2, 3], the rest in [0, 1)."""

    name = "repurchase"

    def __init__(self, half_life_days: float | None = 30.0) -> None:
        self.half_life_days = half_life_days

    def fit(self, data: IndexedData) -> Repurchase:
        self.own = user_item_matrix(data, recency_weights(data.train_times, self.half_life_days))  # [U, N]
        counts = data.item_counts().astype(np.float64)
        self.popularity = counts / (counts.max() + 1.0)  # [N] in [0, 1)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, self.own.shape[0])
        out = np.tile(self.popularity.astype(np.float32), (len(users), 1))  # [B, N]
        for row, u in enumerate(users.tolist()):
            start, end = self.own.indptr[u], self.own.indptr[u + 1]
            items, weight = self.own.indices[start:end], self.own.data[start:end].astype(np.float64)
            if len(items) == 0:
                continue
            # Ranks, not raw weights: 2 + 1e-12 would round to 2 in float32 and lose the order.
            order = np.lexsort((self.popularity[items], weight))  # ascending: weight, then popularity
            out[row, items[order]] = 2.0 + np.arange(1, len(items) + 1) / len(items)
        return out
