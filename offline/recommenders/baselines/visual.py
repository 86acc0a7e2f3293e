"""Visual nearest-neighbour profile: recommend what looks like what the customer bought."""

from __future__ import annotations

import numpy as np

from offline.data.indexed import IndexedData, recency_weights
from offline.features.regions import check_vectors, item_vectors
from offline.recommenders.baselines._common import check_users, user_item_matrix


class VisualProfile:
    """A user's profile = weighted mean of their purchased items' visual vectors, each purchase
    weighted 0.5 ** (age / half_life_days) (1 when None); score = cosine(profile, f_i) for every
    item, bought or not. With center, vectors are taken relative to the catalog mean first, so the
    look shared by every photo does not dominate the cosine. A user without purchases scores 0.

    features: RegionFeatures or an [N, C] float32 matrix in catalog order. Scores [B, N] float32."""

    name = "visual_profile"

    def __init__(self, features, half_life_days: float | None = None, center: bool = True) -> None:
        vectors = item_vectors(features)  # [N, C]
        if center:
            vectors = vectors - vectors.mean(0)
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # unit rows
        self.half_life_days, self.center = half_life_days, center

    def fit(self, data: IndexedData) -> VisualProfile:
        check_vectors(self.vectors, data.num_items)
        history = user_item_matrix(data, recency_weights(data.train_times, self.half_life_days))  # [U, N]
        profiles = np.asarray(history @ self.vectors)  # [U, C] weighted sums (the mean's direction)
        self.profiles = profiles / np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        users = check_users(users, len(self.profiles))
        return (self.profiles[users] @ self.vectors.T).astype(np.float32)  # [B, N]
