""" "Because you bought", measured: how often the history item named for a recommendation shares its
product type or colour, against chance (a history item drawn at random).

For each customer, the model's served top k (the "all" shelf) and the items of the history the user
state carries; each recommended item names its nearest history items (`model.because`) by the cosine of
attended-region vectors. Region vectors of several kinds can be compared (`VECTORS`); the one the export
serves is `SERVED`. A pair counts where the recommended item, the named item and at least one other
history item carry the attribute. Chance is the share of the customer's other history items (the
recommended item itself excluded, as `model.because` excludes it) that match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from offline.evaluation.quality import paired_difference

# value: the model's per-region value W_v f (what the score reads); features: the backbone's region
# features; what: their semantic (block-7) part of a two-part backbone; item: the photo's mean feature,
# no attention (the map left out: what the map adds). Served: value, which the export holds already. On
# the H&M model trained before the test window, for its 525 customers with 3 or more purchases and none in
# the test window (337 pairs): named / chance 0.845 / 0.612 (value), 0.831 / 0.599 (features), 0.836 /
# 0.600 (what), 0.848 / 0.598 (item): every kind names a matching item well above chance, and the map
# adds nothing this measure sees.
VECTORS = ("value", "features", "what", "item")
SERVED = "value"
MATCH_COLUMNS = ("product_type", "colour")


def region_vectors(rec, rows: np.ndarray, kind: str) -> np.ndarray:
    """rows [X] -> [X, R, E] region vectors of `kind` (VECTORS) for `rec` (a fitted VECFRecommender)."""
    from keras import ops

    m = rec.model
    if kind == "value":
        return np.asarray(m.tables(m.regions(ops.convert_to_tensor(rows)))[1])
    regions = np.asarray(m.regions(ops.convert_to_tensor(rows)))  # [X, R, C]
    if kind == "features":
        return regions
    if kind == "what":
        return regions[..., m.where_channels :] if m.where_channels else regions
    if kind == "item":  # one vector per photo: the same for every attention map
        return np.repeat(regions.mean(1, keepdims=True), regions.shape[1], axis=1)
    raise ValueError(f"kind must be one of {VECTORS}, got {kind!r}")


def named_items(rec, users: np.ndarray, k: int, kind: str = SERVED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (recommended rows [U, k], named history rows [U, k, n] (-1: none), history rows [U, H])."""
    from keras import ops

    from model import ranking
    from model.because import attended, name_from_history

    recommended = rec.shelf_rows(users, "all", k)
    tables, layout = rec.serving_tables()
    state, _ = ranking.user_state(tables, layout, users)
    p, history, _ = (np.asarray(a) if a is not None else None for a in ranking.split_state(state, layout))
    if history is None:
        raise ValueError("the model's user states carry no history: nothing to name")

    def vectors(rows: np.ndarray) -> np.ndarray:  # [U, X] -> [U, X, E] attended, as the export computes them
        u, x = rows.shape
        flat = np.maximum(rows, 0).reshape(-1)
        alpha = np.asarray(rec.model.score_pairs(ops.convert_to_tensor(np.repeat(p, x, axis=0)), flat)[1])
        regions = region_vectors(rec, flat, kind)
        return np.asarray(attended(alpha.reshape(u, x, -1), regions.reshape(u, x, *regions.shape[1:])))

    named, _ = name_from_history(recommended, vectors(recommended), history, vectors(history))
    return recommended, np.asarray(named), history


def agreement(
    recommended: np.ndarray,
    named: np.ndarray,
    history: np.ndarray,
    attributes: dict[str, Sequence[str]],
    columns: Sequence[str] = MATCH_COLUMNS,
) -> dict:
    """Per customer: the share of (recommended item, first named item) pairs that share a value of any of
    `columns`, and the chance of that for a random other history item -> {"named", "chance", "pairs",
    "customers", "named - chance": paired_difference over customers}. Empty values do not match."""
    present = [c for c in columns if c in attributes]
    if not present:
        raise ValueError(f"the catalog has none of the attributes {list(columns)}")
    values = np.array([[str(v) for v in attributes[c]] for c in present], dtype=object)  # [A, N]
    known = values != ""

    def match(i: int, h: np.ndarray) -> np.ndarray:  # [len(h)] bool
        return ((values[:, h] == values[:, [i]]) & known[:, h] & known[:, [i]]).any(0)

    named_rate, chance_rate, pairs = [], [], 0
    for u in range(len(recommended)):
        hits, chances = [], []
        for i, names in zip(recommended[u], named[u]):
            others = history[u][(history[u] >= 0) & (history[u] != i)]
            others = others[known[:, others].any(0)]
            if i < 0 or names[0] < 0 or not known[:, i].any() or not known[:, names[0]].any() or len(others) < 2:
                continue
            hits.append(float(match(i, names[:1])[0]))
            chances.append(float(match(i, others).mean()))
        if hits:
            named_rate.append(np.mean(hits))
            chance_rate.append(np.mean(chances))
            pairs += len(hits)
    named_rate, chance_rate = np.array(named_rate), np.array(chance_rate)
    return {
        "named": float(named_rate.mean()) if len(named_rate) else float("nan"),
        "chance": float(chance_rate.mean()) if len(chance_rate) else float("nan"),
        "pairs": pairs,
        "customers": len(named_rate),
        "named - chance": paired_difference(named_rate, chance_rate),
    }
