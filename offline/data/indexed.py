"""A split indexed for models: string ids mapped to rows, the one form every recommender is fitted on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline.data.dataset import Interactions
from offline.data.split import Split


@dataclass(frozen=True)
class IndexedData:
    """A split with string ids mapped to row indices: users in training order of appearance,
    items in catalog (= feature table) order. Validation and test keep only known users and items."""

    user_ids: list[str]
    item_ids: list[str]
    train_users: np.ndarray  # [n] int32
    train_items: np.ndarray  # [n] int32
    train_reviews: np.ndarray  # [n] object (str)
    train_times: np.ndarray  # [n] int64
    validation: dict[int, set[int]]  # user index -> relevant item indices
    test: dict[int, set[int]]

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def seen(self, include_validation: bool = False) -> dict[int, set[int]]:
        """Items each user interacted with before the evaluated period (masked out when ranking)."""
        out: dict[int, set[int]] = {}
        for u, i in zip(self.train_users.tolist(), self.train_items.tolist()):
            out.setdefault(u, set()).add(i)
        if include_validation:
            for u, items in self.validation.items():
                out.setdefault(u, set()).update(items)
        return out

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.train_items, minlength=self.num_items)


def recency_weights(times: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """[n] float64 weight of each interaction: 0.5 ** (age in days / half-life), age counted back from
    the newest one; all ones without decay (half_life_days None or 0)."""
    if not half_life_days or len(times) == 0:
        return np.ones(len(times), dtype=np.float64)
    if half_life_days < 0:
        raise ValueError(f"half_life_days must be positive (or None / 0: no decay), got {half_life_days}")
    age_days = (times.max() - times).astype(np.float64) / 86_400
    return 0.5 ** (age_days / half_life_days)


def index_split(split: Split, item_ids: list[str]) -> IndexedData:
    item_index = {item: i for i, item in enumerate(item_ids)}
    train = split.train
    unknown = {i for i in train.item_ids.tolist() if i not in item_index}
    if unknown:
        raise ValueError(f"{len(unknown)} training items are not in the catalog, e.g. {sorted(unknown)[:3]}")
    user_ids = list(dict.fromkeys(train.user_ids.tolist()))
    user_index = {u: k for k, u in enumerate(user_ids)}

    def relevant(part: Interactions) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for u, i in zip(part.user_ids.tolist(), part.item_ids.tolist()):
            if u in user_index and i in item_index:
                out.setdefault(user_index[u], set()).add(item_index[i])
        return out

    return IndexedData(
        user_ids=user_ids,
        item_ids=list(item_ids),
        train_users=np.array([user_index[u] for u in train.user_ids], dtype=np.int32),
        train_items=np.array([item_index[i] for i in train.item_ids], dtype=np.int32),
        train_reviews=train.reviews,
        train_times=train.timestamps,
        validation=relevant(split.validation),
        test=relevant(split.test),
    )
