"""New-item slots: places in every ranking kept for items nobody has bought yet, filled from the photo.

VECF learns from purchases, so an item without one keeps its initial bias and its id factors never
move: on H&M's validation window it never reaches a top 50, although such items make up 2,191 of the
window's 3,196 (customer, article) pairs. A shop shows new arrivals anyway; this module decides which
ones, per customer:

    new_score(u, i) = VISUAL_WEIGHT * cos(profile_u, v_i) + sum_a share_u(a = a_i) + TREND_WEIGHT * trend_i

- profile_u: the mean of the unit visual vectors v of u's newest distinct purchases (the REPEAT_SLOTS
  rows of `offline.repeats`, which the exported user state already carries); v is the backbone's
  region-mean vector, centred, projected on its first VISUAL_DIMS principal axes, unit length.
- share_u(a = x): the share of those purchases whose attribute `a` (product type, department, ...,
  where the catalog has them) is x. A missing value counts as a value of its own: which articles the
  shop has described at all is itself a signal (on the H&M sample, 6,944 of its 9,312 described
  articles have no purchase yet), and on validation it helped.
- trend_i: mean log1p(purchases in the last TREND_WEEKS weeks) of i's TREND_NEIGHBOURS visually
  nearest items that have purchases: what looks like what sells now.

The weights were set on H&M's validation window (never the test): ranking only new items, this
scorer's Recall@50 was 0.030-0.035 against 0.016 for the visual profile alone.

Every `every`-th place of a ranking (places every-1, 2*every-1, ...; 0 = no slots) holds the next
new item by new_score; the other places hold the other items by the model's score. One order for
the whole catalog, so a top-k is a prefix of every longer top-k; `every` is chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.recommender import IndexedData

NEW_ITEM_ATTRIBUTES = ("index_group", "department", "product_type", "garment_group")
VISUAL_DIMS = 64
VISUAL_WEIGHT = 0.1
TREND_WEIGHT = 0.05
TREND_NEIGHBOURS = 20
TREND_WEEKS = 8
NEW_ITEM_EVERY = (0, 25, 10, 5)  # the candidates validation chooses from; 0 = no slots
NEW_ITEM_PICKS = 20  # new items the exported user state carries, ranked: the slots of k <= 100 at every 5
PCA_SAMPLE = 5000  # catalog rows the principal axes are fitted on (seeded)


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class NewItemScorer:
    """The tables new_score reads, all in catalog order."""

    new: np.ndarray  # [N] bool: no training purchase
    vectors: np.ndarray  # [N, P] float32, unit rows
    codes: np.ndarray  # [N, A] int32: value index of each attribute (A may be 0)
    sizes: np.ndarray  # [A] int32: values per attribute
    trend: np.ndarray  # [N] float32, 0 for items with purchases

    @classmethod
    def build(
        cls, data: IndexedData, features, attributes: dict[str, list[str]] | None = None, seed: int = 0
    ) -> NewItemScorer:
        """From the training part of `data`, the catalog's region features (or [N, C] vectors) and its
        attribute columns (aligned with data.item_ids; columns not in NEW_ITEM_ATTRIBUTES are ignored)."""
        from offline.baselines._common import check_vectors, item_vectors

        x = item_vectors(features)
        check_vectors(x, data)
        x = x - x.mean(0)
        sample = x[np.sort(np.random.default_rng(seed).choice(len(x), min(PCA_SAMPLE, len(x)), replace=False))]
        axes = np.linalg.svd(sample, full_matrices=False)[2][:VISUAL_DIMS]  # [P, C]
        vectors = _unit(x @ axes.T)
        columns = [c for c in NEW_ITEM_ATTRIBUTES if c in (attributes or {})]
        codes, sizes = np.zeros((data.num_items, len(columns)), np.int32), np.zeros(len(columns), np.int32)
        for a, column in enumerate(columns):
            values = attributes[column]
            if len(values) != data.num_items:
                raise ValueError(f"attribute {column!r} has {len(values)} values for {data.num_items} items")
            uniques, codes[:, a] = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
            sizes[a] = len(uniques)
        new = data.item_counts() == 0
        return cls(new, vectors, codes, sizes, trend_prior(data, vectors, new))

    @property
    def num_new(self) -> int:
        return int(self.new.sum())

    def score(self, rows: np.ndarray) -> np.ndarray:
        """History rows [B, H] (catalog rows, -1 empty) -> new_score [B, N] float32 for every item (the
        slots only read the new items' columns). A user without history scores the trend alone."""
        rows = np.asarray(rows, dtype=np.int64)
        used = rows >= 0
        safe = np.maximum(rows, 0)
        profile = _unit((self.vectors[safe] * used[..., None]).sum(1))  # [B, P]
        out = VISUAL_WEIGHT * profile @ self.vectors.T + TREND_WEIGHT * self.trend[None]
        filled = np.maximum(used.sum(1, keepdims=True), 1)
        b, h = np.nonzero(used)
        for a, size in enumerate(self.sizes.tolist()):
            share = np.zeros((len(rows), size), np.float32)
            np.add.at(share, (b, self.codes[safe[b, h], a]), 1.0)
            out += (share / filled)[:, self.codes[:, a]]
        return out.astype(np.float32)

    def interleave(self, scores: np.ndarray, rows: np.ndarray, every: int) -> np.ndarray:
        """The ranking with new-item slots, as scores [B, N] whose descending order is that ranking (the
        negated place): every `every`-th place a new item by new_score, the rest by `scores`."""
        check_every(every)
        scores = np.asarray(scores, dtype=np.float32)
        if every == 0 or not self.new.any():
            return scores.copy()
        new_rows, old_rows = np.nonzero(self.new)[0], np.nonzero(~self.new)[0]
        fresh = self.score(rows)[:, new_rows]  # [B, Nnew]
        place = np.empty(scores.shape, np.float64)
        old_rank = np.argsort(-scores[:, old_rows], axis=1, kind="stable")  # [B, Nold] column order
        new_rank = np.argsort(-fresh, axis=1, kind="stable")
        batch = np.arange(len(scores))[:, None]
        place[batch, old_rows[old_rank]] = slot_places(len(old_rows), every, new=False)[None]
        place[batch, new_rows[new_rank]] = slot_places(len(new_rows), every, new=True)[None]
        return (-place).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, new=self.new, vectors=self.vectors, codes=self.codes, sizes=self.sizes, trend=self.trend)

    @classmethod
    def load(cls, path: Path) -> NewItemScorer:
        with np.load(path) as z:
            return cls(z["new"], z["vectors"], z["codes"], z["sizes"], z["trend"])


def check_every(every: int) -> None:
    if every != 0 and every < 2:
        raise ValueError(f"new_item_every must be 0 (no slots) or >= 2, got {every}")


def slot_places(count: int, every: int, new: bool) -> np.ndarray:
    """[count] places (0 = first) of the 1st, 2nd, ... new items (places every-1, 2*every-1, ...) or of
    the other items (the places in between): merging two ranked lists by place interleaves them."""
    r = np.arange(count, dtype=np.int64)
    return (r + 1) * every - 1 if new else r + r // (every - 1)


def trend_prior(data: IndexedData, vectors: np.ndarray, new: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """[N] float32: for each new item, mean log1p(recent purchases) of its TREND_NEIGHBOURS nearest items
    with purchases (cosine of `vectors`, unit rows); 0 for the others."""
    trend = np.zeros(len(new), np.float32)
    old = np.nonzero(~new)[0]
    if not new.any() or not len(old) or not len(data.train_times):
        return trend
    recent = data.train_times > data.train_times.max() - TREND_WEEKS * 7 * 86400
    sold = np.log1p(np.bincount(data.train_items[recent], minlength=len(new))[old]).astype(np.float32)
    k = min(TREND_NEIGHBOURS, len(old))
    fresh = np.nonzero(new)[0]
    for s in range(0, len(fresh), chunk):  # [chunk, Nold] similarities at a time
        rows = fresh[s : s + chunk]
        near = np.argpartition(-(vectors[rows] @ vectors[old].T), k - 1, axis=1)[:, :k]
        trend[rows] = sold[near].mean(1)
    return trend
