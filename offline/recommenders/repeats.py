"""Repeat purchases: which items each customer bought before, and the score boost they earn.

Shoppers re-buy (basics, the same tights in another size): on H&M's validation window the
customer's own past purchases are the strongest single signal, and VECF's score, fitted to rank
unseen items against sampled negatives, under-weights them. The boost added to VECF's score is

    boost(u, i) = repeat_weight * spread * log1p(n_ui)

n_ui = how often u bought i in training, spread = the standard deviation of the trained model's
scores (so repeat_weight means the same across models), repeat_weight chosen on validation (0 off).
Only each customer's `slots` most recent distinct items are kept: a fixed width lets the boosts
travel inside the user's state vector (see `model.contract`), and on validation 32 slots score as
well as all of them. The boost is applied by `model.ranking`, for evaluation and serving alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPEAT_SLOTS = 32
REPEAT_WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0)  # the candidates validation chooses from


@dataclass(frozen=True)
class RepeatTable:
    """Ragged per-user table: user u's items are items[offsets[u]:offsets[u + 1]], newest first,
    with their purchase counts."""

    offsets: np.ndarray  # [U + 1] int64
    items: np.ndarray  # [nnz] int32
    counts: np.ndarray  # [nnz] float32

    @classmethod
    def build(
        cls, users: np.ndarray, items: np.ndarray, times: np.ndarray, num_users: int, slots: int = REPEAT_SLOTS
    ) -> RepeatTable:
        """From interactions (users [n], items [n], times [n]): per user, the `slots` distinct items
        bought most recently (ties: the lower item index), each with its purchase count."""
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        users, items, times = (np.asarray(a) for a in (users, items, times))
        if len(users) == 0:
            return cls(np.zeros(num_users + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        width = int(items.max()) + 1  # one int64 code per (user, item): far faster to unique than row pairs
        codes, inverse = np.unique(users.astype(np.int64) * width + items.astype(np.int64), return_inverse=True)
        pairs = np.stack([codes // width, codes % width], 1)  # [P, 2] (user, item)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse, minlength=len(pairs)).astype(np.float32)
        newest = np.full(len(pairs), np.iinfo(np.int64).min)
        np.maximum.at(newest, inverse, times.astype(np.int64))
        order = np.lexsort((pairs[:, 1], -newest, pairs[:, 0]))  # by user, newest first, then item
        pairs, counts = pairs[order], counts[order]
        starts = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")
        keep = np.arange(len(pairs)) - starts < slots  # rank within the user
        pairs, counts = pairs[keep], counts[keep]
        offsets = np.zeros(num_users + 1, np.int64)
        np.cumsum(np.bincount(pairs[:, 0], minlength=num_users)[:num_users], out=offsets[1:])
        return cls(offsets, pairs[:, 1].astype(np.int32), counts)

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    def boosts(self, weight: float) -> np.ndarray:
        """[nnz] float32: `weight` * log1p(count) for every entry (weight in score units)."""
        return (weight * np.log1p(self.counts)).astype(np.float32)

    def tables(self, unit: float) -> dict[str, np.ndarray]:
        """The repeat tables `model.ranking` reads, each entry boosted by `unit` * log1p(count)."""
        return {"repeat_offsets": self.offsets, "repeat_items": self.items, "repeat_boosts": self.boosts(unit)}

    def save(self, path: Path) -> None:
        np.savez(path, offsets=self.offsets, items=self.items, counts=self.counts)

    @classmethod
    def load(cls, path: Path) -> RepeatTable:
        with np.load(path) as z:
            return cls(z["offsets"], z["items"], z["counts"])
