"""The serving default for two-stage ranking, measured at export: the fewest candidates whose top k keeps
RECALL_TARGET of the exact top k, on a sample of the model's own users.

Exact ranking scores the whole catalog for every request; two-stage ranking (the `recommend_candidates`
signature) scores C retrieved candidates. Which C is enough depends on the model and the catalog, so
the export measures it and writes it into serving.json (`candidates`), and the gateway ranks with it
unless CANDIDATES says otherwise. With new-item slots both rankings fill the slots the same way, so
recall is counted over the places ranked by score. 0: no C below the catalog's size keeps the target,
or the catalog is small enough that every C tried covers it: the gateway then ranks exactly.
"""

from __future__ import annotations

import numpy as np

LADDER = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800)
RECALL_TARGET = 0.99
K = 50
USERS = 200  # a seeded sample of the model's users
CHUNK = 16  # users ranked at once: exact ranking builds [users, N, R] attention


def choose_candidates(module, user_ids: list[str], every: int, seed: int = 0) -> tuple[int, list[dict]]:
    """(the fewest LADDER candidates whose two-stage top K keeps RECALL_TARGET of the exact top K, or 0;
    the recall of each count tried) for `module` (offline.serving.module.Serving, or its SavedModel) on
    USERS of `user_ids`; `every`: its new-item slots' spacing (0: none)."""
    import tensorflow as tf

    n = int(module.item_ids.shape[0])
    k = min(K, n)
    sample = np.random.default_rng(seed).choice(len(user_ids), min(USERS, len(user_ids)), replace=False)
    asked = tf.constant(np.array(user_ids, dtype=object)[np.sort(sample)].astype(str))
    states = module.user_embedding(asked)["embedding"]
    scored = np.array([p for p in range(k) if not every or (p + 1) % every])  # places ranked by score

    def top(call) -> np.ndarray:  # [U, places] ids, in chunks of users
        parts = [call(states[s : s + CHUNK])["item_ids"].numpy()[:, scored] for s in range(0, len(sample), CHUNK)]
        return np.concatenate(parts)

    exact = top(lambda state: module.recommend(state, tf.constant(k)))
    tried = []
    for c in (c for c in LADDER if k <= c < n):  # fewer than k count as k; n or more is the exact ranking
        got = top(lambda state, c=c: module.recommend_candidates(state, tf.constant(k), tf.constant(c)))
        recall = float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, exact)]))
        tried.append({"candidates": c, f"recall@{k}": round(recall, 4)})
        if recall >= RECALL_TARGET:
            return c, tried
    return 0, tried
