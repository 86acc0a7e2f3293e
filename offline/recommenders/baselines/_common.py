"""Pieces the baselines share: the user-item matrix, recency weights, item vectors, BPR sampling."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from offline.data.indexed import IndexedData
from offline.features.regions import item_vectors

DAY = 86400


def user_item_matrix(data: IndexedData, weights: np.ndarray | None = None, binary: bool = False) -> sp.csr_matrix:
    """[U, N] csr: summed weights (purchase counts by default) of each user's training purchases;
    binary=True gives 1 for every purchased pair."""
    values = np.ones(len(data.train_items), dtype=np.float32) if weights is None else weights.astype(np.float32)
    m = sp.csr_matrix((values, (data.train_users, data.train_items)), shape=(data.num_users, data.num_items))
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m


def visual_matrix(features) -> np.ndarray:
    """[N, C] float32 item vectors divided by their mean norm, so one learning rate and one
    initialisation fit any backbone (the VBPR models take these)."""
    vectors = item_vectors(features)
    return vectors / max(float(np.linalg.norm(vectors, axis=1).mean()), 1e-12)


def check_users(users: np.ndarray, num_users: int) -> np.ndarray:
    """users [B] -> int64 indices, or an error naming the bad range."""
    users = np.asarray(users, dtype=np.int64)
    if users.size and (users.min() < 0 or users.max() >= num_users):
        raise ValueError(f"user indices must be in [0, {num_users}), got {users.min()}..{users.max()}")
    return users
