"""Every user's catalog ranked by a Recommender and the per-user metrics averaged: what early stopping
reads during training and `offline evaluate` reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from offline.evaluation.interface import Recommender
from offline.evaluation.ranking_metrics import user_metrics


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """scores [B, N] -> indices [B, k], best first, ties broken by the lower item index."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def rank_metrics(
    model: Recommender,
    relevant: dict[int, set[int]],
    seen: dict[int, set[int]],
    ks: Sequence[int] = (5, 10),
    batch: int = 256,
) -> dict[str, float]:
    """Mean of each user's metrics. Items in `seen` are removed from that user's ranking."""
    users = np.array(sorted(relevant), dtype=np.int64)
    if len(users) == 0:
        raise ValueError("no users to evaluate: the evaluated split is empty")
    kmax = max(ks)
    sums: dict[str, float] = {}
    for s in range(0, len(users), batch):
        chunk = users[s : s + batch]
        scores = np.array(model.score(chunk), dtype=np.float32, copy=True)  # [b, N]
        for row, u in enumerate(chunk.tolist()):
            for i in seen.get(u, ()):
                scores[row, i] = -np.inf
        for u, ranked in zip(chunk.tolist(), top_k(scores, kmax).tolist()):
            for key, value in user_metrics(ranked, relevant[u], ks).items():
                sums[key] = sums.get(key, 0.0) + value
    return {key: value / len(users) for key, value in sums.items()} | {"users": int(len(users))}
