"""New-item slots: places in every ranking kept for items nobody has bought yet, filled from the photo.

VECF learns from purchases, so an item without one keeps its initial bias and its id factors never
move: on H&M's validation window it never reaches a top 50, although such items make up 2,191 of the
window's 3,196 (customer, article) pairs. A shop shows new arrivals anyway; this module decides which
ones, per customer:

    new_score(u, i) = VISUAL_WEIGHT * cos(profile_u, v_i) + sum_a share_u(a = a_i) + TREND_WEIGHT * trend_i

- profile_u: the mean of the unit visual vectors v of u's newest distinct purchases (the REPEAT_SLOTS
  rows of `offline.recommenders.repeats`, which the exported user state already carries); v is the backbone's
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
This module builds the tables; `model.ranking` scores and places the new items from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.data.indexed import IndexedData

NEW_ITEM_ATTRIBUTES = ("index_group", "department", "product_type", "garment_group", "category")
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
        from offline.features.regions import check_vectors, item_vectors

        x = item_vectors(features)
        check_vectors(x, data.num_items)
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

    def tables(self) -> tuple[dict[str, np.ndarray], int]:
        """The new-item tables `model.ranking` reads (its docstring names them) and the number of attribute
        values they use: new_score is computed there, for evaluation and serving alike."""
        fresh = np.nonzero(self.new)[0]
        # attribute a's values are numbered after those of attributes < a: one one-hot, one gather
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int32)
        # [M, P + 1]: one product with [profile | 1] gives the visual and trend terms together
        matrix = np.concatenate([VISUAL_WEIGHT * self.vectors[fresh], TREND_WEIGHT * self.trend[fresh, None]], 1)
        tables = {
            "new_rows": fresh.astype(np.int32),
            "is_new": self.new,
            "taste_vectors": self.vectors,
            "new_matrix": matrix.astype(np.float32),
            "attribute_codes": (self.codes + offsets).astype(np.int32),
            "new_codes": (self.codes[fresh] + offsets).astype(np.int32),
        }
        return tables, int(self.sizes.sum())

    def save(self, path: Path) -> None:
        np.savez(path, new=self.new, vectors=self.vectors, codes=self.codes, sizes=self.sizes, trend=self.trend)

    @classmethod
    def load(cls, path: Path) -> NewItemScorer:
        with np.load(path) as z:
            return cls(z["new"], z["vectors"], z["codes"], z["sizes"], z["trend"])


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
