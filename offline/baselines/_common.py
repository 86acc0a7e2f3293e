"""Pieces the baselines share: the user-item matrix, recency weights, item vectors, BPR sampling."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from offline.features import item_vectors
from offline.recommender import IndexedData

DAY = 86400


def recency_weights(data: IndexedData, half_life_days: float | None) -> np.ndarray:
    """[n] weight of each training interaction: 0.5 ** (age / half-life), age counted back from the
    last training timestamp; all ones when half_life_days is None."""
    if half_life_days is None:
        return np.ones(len(data.train_items), dtype=np.float32)
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive or None, got {half_life_days}")
    age_days = (data.train_times.max() - data.train_times) / DAY  # [n]
    return np.power(0.5, age_days / half_life_days).astype(np.float32)


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


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, positives: sp.csr_matrix, candidates: np.ndarray, tries: int = 10
) -> np.ndarray:
    """Uniform negatives from `candidates` for each user, re-drawn (up to `tries` times) where the
    draw is one of the user's training items."""
    neg = candidates[rng.integers(0, len(candidates), len(users))]
    for _ in range(tries):
        bad = np.flatnonzero(np.asarray(positives[users, neg]).ravel() > 0)
        if len(bad) == 0:
            break
        neg[bad] = candidates[rng.integers(0, len(candidates), len(bad))]
    return neg


def bpr_batches(
    rng: np.random.Generator, data: IndexedData, positives: sp.csr_matrix, batch_size: int, candidates: np.ndarray
):
    """One epoch of (users, positives, negatives) int64 batches over the distinct training pairs."""
    coo = positives.tocoo()
    order = rng.permutation(coo.nnz)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        users, pos = coo.row[idx].astype(np.int64), coo.col[idx].astype(np.int64)
        yield users, pos, sample_negatives(rng, users, positives, candidates).astype(np.int64)


def check_users(users: np.ndarray, num_users: int) -> np.ndarray:
    """users [B] -> int64 indices, or an error naming the bad range."""
    users = np.asarray(users, dtype=np.int64)
    if users.size and (users.min() < 0 or users.max() >= num_users):
        raise ValueError(f"user indices must be in [0, {num_users}), got {users.min()}..{users.max()}")
    return users


def negative_pool(data: IndexedData, negatives: str) -> np.ndarray:
    """Items negatives are drawn from: "catalog" (every item, the uniform BPR choice) or "warm"
    (items with a training purchase, as a model trained on the interaction data alone sees them)."""
    if negatives == "catalog":
        return np.arange(data.num_items)
    if negatives == "warm":
        return np.flatnonzero(data.item_counts() > 0)
    raise ValueError(f"negatives must be 'catalog' or 'warm', got {negatives!r}")


def fit_pairwise(
    params: list,
    loss_fn,
    data: IndexedData,
    positives: sp.csr_matrix,
    epochs: int,
    lr: float,
    batch_size: int,
    negatives: str,
    seed: int,
) -> list[float]:
    """Adam on the BPR loss over `params` (torch tensors with requires_grad). loss_fn(users, pos, neg)
    -> the batch's mean -log sigmoid(x_uij) plus its regulariser. Returns the mean loss per epoch."""
    import torch

    rng = np.random.default_rng(seed)
    candidates = negative_pool(data, negatives)
    optimizer = torch.optim.Adam(params, lr=lr)
    history = []
    for _ in range(epochs):
        total, batches = 0.0, 0
        for u, i, j in bpr_batches(rng, data, positives, batch_size, candidates):
            loss = loss_fn(torch.from_numpy(u), torch.from_numpy(i), torch.from_numpy(j))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        history.append(total / max(batches, 1))
    return history
