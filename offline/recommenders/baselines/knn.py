"""Item-based nearest neighbours on the user-item matrix (Sarwar et al. 2001, Deshpande & Karypis 2004)."""

from __future__ import annotations

import numpy as np

from offline.data.indexed import IndexedData, recency_weights
from offline.recommenders.baselines._common import check_users, user_item_matrix


class ItemKNN:
    """s_ij = |buyers(i) & buyers(j)| / (sqrt(|buyers(i)| |buyers(j)|) + shrink), the cosine of two
    binary item columns (shrunk towards 0 for rarely bought pairs). A user's score for j is
    sum over their purchases of w * s_ij, w = 0.5 ** (age / half_life_days) (1 when None; a repeat
    purchase adds again). include_self keeps s_ii = 1, so past purchases score too (repeats allowed).

    With popularity_ties, items of equal score (most of the catalog scores 0) are ordered by training
    count: each gets at most 1e-6 x the row's smallest positive score added. Scores [B, N] float32."""

    name = "item_knn"

    def __init__(
        self,
        shrink: float = 0.0,
        half_life_days: float | None = None,
        include_self: bool = False,
        popularity_ties: bool = True,
    ) -> None:
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.shrink, self.half_life_days = shrink, half_life_days
        self.include_self, self.popularity_ties = include_self, popularity_ties

    def fit(self, data: IndexedData) -> ItemKNN:
        B = user_item_matrix(data, binary=True)  # [U, N]
        co = (B.T @ B).tocsr().astype(np.float64)  # [N, N] common buyers
        buyers = np.asarray(B.sum(0)).ravel()  # [N]
        rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
        co.data = co.data / (np.sqrt(buyers[rows] * buyers[co.indices]) + self.shrink)
        if not self.include_self:
            co.setdiag(0.0)
            co.eliminate_zeros()
        self.similarity = co.astype(np.float32)
        self.history = user_item_matrix(data, recency_weights(data.train_times, self.half_life_days))  # [U, N]
        counts = data.item_counts().astype(np.float64)
        self.tie_break = (1e-6 * counts / (counts.max() + 1.0)).astype(np.float32)  # [N]
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, self.history.shape[0])
        scores = (self.history[users] @ self.similarity).toarray().astype(np.float32)  # [B, N]
        if self.popularity_ties:
            # Scale the tie-break under each row's smallest positive score, so it never reorders them.
            positive = np.where(scores > 0, scores, np.inf).min(1, keepdims=True)  # [B, 1]
            scale = np.where(np.isfinite(positive), positive, 1.0)
            scores += scale * self.tie_break
        return scores
