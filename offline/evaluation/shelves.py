"""Each shelf's own recall (`model.contract.SHELVES`): of a customer's test purchases that a shelf could
hold, the share its top k holds.

What a shelf could hold: "all" every test purchase; "buy_again" the ones the customer had bought before
the test window; "for_you" the others; "new_for_you" the ones of items nobody had bought before it. A
customer counts for a shelf when they bought something it could hold. Beside each shelf, a reference
ranking of the same part of the catalog: "buy_again" the customer's history newest first (the order the
user state carries it in), "for_you" and "all" the most bought items (less the customer's own for
"for_you"), "new_for_you" the new items in catalog order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.contract import SHELVES
from offline.data.indexed import IndexedData
from offline.evaluation.quality import bootstrap_interval, paired_difference

KS = (10, 50)


def shelf_relevant(data: IndexedData, shelf: str) -> dict[int, set[int]]:
    """user -> the test purchases `shelf` could hold (customers with none are left out)."""
    seen = data.seen()
    new = data.item_counts() == 0
    keep = {
        "all": lambda u, i: True,
        "buy_again": lambda u, i: i in seen.get(u, set()),
        "for_you": lambda u, i: i not in seen.get(u, set()),
        "new_for_you": lambda u, i: bool(new[i]),
    }[shelf]
    out = {u: {i for i in items if keep(u, i)} for u, items in data.test.items()}
    return {u: items for u, items in out.items() if items}


def recall_at(rows: np.ndarray, relevant: Sequence[set[int]], k: int) -> np.ndarray:
    """rows [U, >= k] ranked catalog rows (-1: none) -> [U] recall@k against `relevant`."""
    return np.array([len(set(r[:k][r[:k] >= 0].tolist()) & rel) / len(rel) for r, rel in zip(rows, relevant)])


def reference_rows(data: IndexedData, users: np.ndarray, shelf: str, history: np.ndarray, k: int) -> np.ndarray:
    """[U, k] the reference ranking of `shelf` (see the module's docstring); `history` [U, H] the states' rows."""
    if shelf == "buy_again":
        return np.pad(history, ((0, 0), (0, max(0, k - history.shape[1]))), constant_values=-1)[:, :k]
    counts = data.item_counts()
    if shelf == "new_for_you":
        fresh = np.flatnonzero(counts == 0)[:k]
        return np.tile(np.pad(fresh, (0, k - len(fresh)), constant_values=-1), (len(users), 1))
    order = np.lexsort((np.arange(len(counts)), -counts))
    seen = data.seen()
    out = []
    for u in users.tolist():
        own = seen.get(u, set()) if shelf == "for_you" else set()
        out.append([i for i in order[: k + len(own)] if i not in own][:k])
    return np.array(out)


def shelf_recall(rec, data: IndexedData, ks: Sequence[int] = KS) -> dict[str, dict]:
    """Per shelf: the customers it counts, its recall@k (mean and bootstrap interval), the reference's, and
    the paired difference shelf - reference. `rec`: a fitted VECFRecommender on `data`."""
    from model import ranking

    depth = max(ks)
    tables, layout = rec.serving_tables()
    out = {}
    for shelf in SHELVES:
        relevant = shelf_relevant(data, shelf)
        users = np.array(sorted(relevant), dtype=np.int64)
        if not len(users):
            continue
        rows = rec.shelf_rows(users, shelf, depth)
        _, history, _ = ranking.split_state(ranking.user_state(tables, layout, users)[0], layout)
        history = np.asarray(history) if history is not None else -np.ones((len(users), 1), np.int64)
        reference = reference_rows(data, users, shelf, history, depth)
        wanted = [relevant[u] for u in users.tolist()]
        row: dict = {"customers": len(users)}
        for k in ks:
            mine, theirs = recall_at(rows, wanted, k), recall_at(reference, wanted, k)
            low, high = bootstrap_interval(mine)
            row[f"recall@{k}"] = {"mean": float(mine.mean()), "low": low, "high": high}
            row[f"reference_recall@{k}"] = float(theirs.mean())
            row[f"shelf - reference @{k}"] = paired_difference(mine, theirs)
        out[shelf] = row
    return out
