"""The tables and layout `model.ranking` ranks with, built once from a trained model: offline
evaluation and the export take them from here, so both rank with the same state."""

from __future__ import annotations

import numpy as np

from model.ranking import Layout, check_every
from offline.recommenders.newitems import NEW_ITEM_PICKS, NewItemScorer
from offline.recommenders.repeats import REPEAT_SLOTS, RepeatTable


def serving_tables(
    user_vectors: np.ndarray,
    num_items: int,
    repeats: RepeatTable | None = None,
    repeat_unit: float = 0.0,
    new_items: NewItemScorer | None = None,
    new_item_every: int = 0,
    new_item_picks: int = NEW_ITEM_PICKS,
    fold_vectors: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], Layout]:
    """user_vectors [U, D]; `repeats`: the user state carries each user's newest distinct purchases (the
    shelves and "because you bought" read them), boosted by `repeat_unit` (score per log1p(purchase
    count); 0: no boost); `new_items`: the tables of the new-item score (the "new_for_you" shelf), and with
    `new_item_every` > 0 every new_item_every-th place holds a new item and the state carries the best
    `new_item_picks` of them. `fold_vectors` [N, D+1] (`model.foldin.item_vectors`): what a new shopper's
    history is folded in against."""
    check_every(new_item_every)
    fresh = new_items is not None and new_items.num_new > 0
    every = new_item_every if fresh else 0
    if fresh and len(new_items.new) != num_items:
        raise ValueError(f"the new-item scorer has {len(new_items.new)} items, the catalog {num_items}")
    slots = REPEAT_SLOTS if repeats is not None and len(repeats.items) else 0
    if slots and num_items >= 2**24:
        raise ValueError("the user state carries item rows as float32: catalogs must hold < 2**24 items")
    if slots and repeats.num_users != len(user_vectors):
        raise ValueError(f"the repeat table has {repeats.num_users} users, the model {len(user_vectors)}")
    tables: dict[str, np.ndarray] = {"user_vectors": np.asarray(user_vectors, np.float32)}
    if fold_vectors is not None:
        tables["fold_vectors"] = np.asarray(fold_vectors, np.float32)
    if slots:
        tables |= repeats.tables(repeat_unit)
    values = picks = 0
    if fresh:
        new_tables, values = new_items.tables()
        tables |= new_tables
        picks = min(new_item_picks, new_items.num_new) if every else 0
    return tables, Layout(
        dim=tables["user_vectors"].shape[1],
        slots=slots,
        every=every,
        picks=picks,
        attribute_values=values,
        new_items=fresh,
    )
