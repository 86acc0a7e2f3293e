"""Hand-sized models and hand-computed rankings that several offline test folders check against."""

from __future__ import annotations

import keras
import numpy as np

from model.vecf import VECF
from offline.recommenders.repeats import RepeatTable


def random_vecf(use_attention: bool = True, seed: int = 1) -> VECF:
    """A small VECF with every weight random (trained models start the item side at zero)."""
    model = VECF(
        num_users=6,
        num_items=9,
        num_regions=4,
        channels=5,
        dim=3,
        attention_dim=2,
        use_attention=use_attention,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype(keras.backend.standardize_dtype(weight.dtype)))
    return model


def boosted_by_hand(raw: np.ndarray, repeats: RepeatTable, unit: float) -> np.ndarray:
    """raw [U, N] plus unit * log1p(count) at each user's repeat items."""
    out = np.array(raw, np.float32)
    for u in range(repeats.num_users):
        for s in range(repeats.offsets[u], repeats.offsets[u + 1]):
            out[u, repeats.items[s]] += unit * np.log1p(repeats.counts[s])
    return out


SAMPLE_REPEATS = "sample"  # user 0: items 5 (3 times) and 2; user 3: item 7; the others none


def exported(unit: float, repeats: RepeatTable | str | None = SAMPLE_REPEATS, clusters: int = 0, **settings):
    """`random_vecf` exported (build_module) with a repeat table (SAMPLE_REPEATS, or None: no repeat rows)
    and boost unit `unit`, and any other of build_module's `settings` (the new-item slots'); users u0..,
    items i0.. -> (model, module, users, items, repeats)."""
    from offline.serving.export import build_module

    model = random_vecf()
    users = [f"u{n}" for n in range(model.num_users)]
    items = [f"i{n}" for n in range(model.num_items)]
    if repeats == SAMPLE_REPEATS:
        repeats = RepeatTable.build(
            np.array([0, 0, 0, 0, 3]), np.array([5, 5, 2, 5, 7]), np.array([1, 2, 3, 4, 5]), num_users=model.num_users
        )
    module = build_module(
        model,
        users,
        items,
        np.ones(len(items)),
        np.ones(len(users)),
        (2, 2),
        retrieval_clusters=clusters,
        repeats=repeats,
        repeat_unit=unit,
        **settings,
    )
    return model, module, users, items, repeats
