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
) -> tuple[dict[str, np.ndarray], Layout]:
    """user_vectors [U, D]; `repeats` with `repeat_unit` > 0 (score per log1p(purchase count)): the boost
    travels in the user state; `new_items` with `new_item_every` > 0: every new_item_every-th place holds
    a new item, chosen from the history rows the state then carries (with all boosts 0 when the boost is
    off), and the state carries the best `new_item_picks` new items."""
    check_every(new_item_every)
    every = new_item_every if new_items is not None and new_items.num_new else 0
    if every and len(new_items.new) != num_items:
        raise ValueError(f"the new-item scorer has {len(new_items.new)} items, the catalog {num_items}")
    slots = REPEAT_SLOTS if repeats is not None and (repeat_unit > 0 or every) and len(repeats.items) else 0
    if slots and num_items >= 2**24:
        raise ValueError("the user state carries item rows as float32: catalogs must hold < 2**24 items")
    if slots and repeats.num_users != len(user_vectors):
        raise ValueError(f"the repeat table has {repeats.num_users} users, the model {len(user_vectors)}")
    tables: dict[str, np.ndarray] = {"user_vectors": np.asarray(user_vectors, np.float32)}
    if slots:
        tables |= repeats.tables(repeat_unit)
    values = picks = 0
    if every:
        new_tables, values = new_items.tables()
        tables |= new_tables
        picks = min(new_item_picks, new_items.num_new)
    return tables, Layout(
        dim=tables["user_vectors"].shape[1], slots=slots, every=every, picks=picks, attribute_values=values
    )
