"""Top-K ranking metrics for one user: small pure functions over a ranked list and a relevant set."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence


def hit_rate(ranked: Sequence[Hashable], relevant: set, k: int) -> float:
    return float(any(item in relevant for item in ranked[:k]))


def precision(ranked: Sequence[Hashable], relevant: set, k: int) -> float:
    return sum(item in relevant for item in ranked[:k]) / k


def recall(ranked: Sequence[Hashable], relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("recall is undefined for a user with no relevant items")
    return sum(item in relevant for item in ranked[:k]) / len(relevant)


def f1(ranked: Sequence[Hashable], relevant: set, k: int) -> float:
    p, r = precision(ranked, relevant, k), recall(ranked, relevant, k)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ndcg(ranked: Sequence[Hashable], relevant: set, k: int) -> float:
    """Binary-relevance NDCG: DCG of the list over the DCG of an ideal list of min(|relevant|, k) hits."""
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


METRICS = {"hr": hit_rate, "precision": precision, "recall": recall, "f1": f1, "ndcg": ndcg}


def user_metrics(ranked: Sequence[Hashable], relevant: set, ks: Sequence[int]) -> dict[str, float]:
    """{"recall@10": ..., ...} for every metric and k."""
    return {f"{name}@{k}": fn(ranked, relevant, k) for k in ks for name, fn in METRICS.items()}
