"""One interface for every model, so evaluation never special-cases one (as in Cornac)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from offline.data.indexed import IndexedData


class Recommender(Protocol):
    name: str

    def fit(self, data: IndexedData) -> Recommender: ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """users [B] int -> scores [B, N] over the whole catalog (higher is better)."""
        ...


class Explainer(Protocol):
    def attention(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """users [B], items [B] int -> attention weights [B, R] for each (user, item) pair."""
        ...
