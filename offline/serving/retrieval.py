"""Stage 1 of two-stage ranking: per-cluster item tables a user retrieves candidates with, in one product.

VECF's score is linear in the user's [p_u, 1] but for the attention, which depends on the user only
through the query `project_users(p_u)` [A]. Users' queries are clustered (scipy's k-means on a seeded sample);
user u retrieves with the table of the nearest centroid, approx(u, i) = [p_u, 1] . T_k[i].

Each table starts as `VECF.retrieval_vectors` weighted by the average attention of its members. Then,
for a second seeded sample of users (`fit_users`), the model's exact scores of every item are computed,
and each table is fitted to its cluster's users by ridge regression towards that start: the linear
function of [p_u, 1] that best predicts the exact scores near the centroid, where averaged attention
only guesses them. On the 200k synthetic model (`bench.serve`, random and sharply peaked attention),
stage-1 recall@50 of 60 users outside both samples went from 0.900 to 0.970 with 1,000 candidates and
from 0.929 to 0.977 with 2,000 (`fit_users` 2,048, `ridge` 0.1; ridge 0.3 and 1.0 gave 0.962 and 0.941
with 1,000). There the fit adds about 70 s to the export (exact scores of 2,048 users, 200,000 items).
"""

from __future__ import annotations

import warnings

import numpy as np

from model.ranking import nearest_centroid

RETRIEVAL_CLUSTERS = 16  # retrieval tables: one per cluster of the users' attention queries
RETRIEVAL_USERS = 256  # users sampled to find the clusters; a table starts from its members' average attention
RETRIEVAL_FIT_USERS = 2048  # users whose exact scores each table is then fitted to (0: no fit)
RETRIEVAL_RIDGE = 0.1  # the fit's ridge, relative to the members' mean squared embedding entry
RETRIEVAL_SEED = 0
SCORE_CHUNK = 8  # users scored at once while fitting: [N*R, 8] intermediates


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """scipy's k-means with k-means++ seeding: (centroids [k', A], assignment [P]), k' <= k, no cluster
    empty. Points are then assigned with `nearest_centroid`, the lookup the export serves, and clusters
    nobody is nearest to are dropped; fewer distinct points than `k` give that many clusters."""
    from scipy.cluster.vq import kmeans2

    distinct = len(np.unique(points, axis=0))
    with warnings.catch_warnings():  # an empty cluster is dropped below, not an error
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        centroids, _ = kmeans2(
            points.astype(np.float64), min(k, distinct), iter=iterations, minit="++", seed=np.random.default_rng(seed)
        )
    centroids = centroids.astype(points.dtype)
    assignment = np.asarray(nearest_centroid(points, centroids))
    used = np.unique(assignment)
    return centroids[used], np.searchsorted(used, assignment)


def fit_tables(
    model,
    split_proj: np.ndarray,
    value_proj: np.ndarray,
    centroids: np.ndarray,
    tables: np.ndarray,
    users: np.ndarray,
    ridge: float = RETRIEVAL_RIDGE,
) -> np.ndarray:
    """tables [K, N, D+1] refitted: T_k = argmin sum over cluster k's `users` [U, D] of
    ||X T^T - S||^2 + lam ||T - tables[k]||^2, X the users' [p_u, 1], S their exact scores [U_k, N]
    (`VECF.score_catalog` from `split_proj` [N, R, 2A] and `value_proj`),
    lam = ridge * (mean of X's squared embedding entries) * U_k. A cluster without users keeps its table."""
    from keras import ops

    split = ops.convert_to_tensor(split_proj)
    values = ops.convert_to_tensor(value_proj)
    assignment = np.asarray(nearest_centroid(model.attention.project_users(users), centroids))
    out = np.array(tables, np.float32)
    for k in range(len(centroids)):
        members = users[assignment == k]
        if not len(members):
            continue
        scores = np.concatenate(
            [
                np.asarray(
                    model.score_catalog(
                        members[s : s + SCORE_CHUNK], model.item_embedding, model.item_bias, split, values
                    )[0]
                )
                for s in range(0, len(members), SCORE_CHUNK)
            ]
        )  # [U_k, N]
        x = np.concatenate([members, np.ones((len(members), 1), np.float32)], 1).astype(np.float64)  # [U_k, D+1]
        gram = x.T @ x
        lam = ridge * np.diag(gram)[:-1].mean()
        residual = scores - x @ tables[k].T.astype(np.float64)  # [U_k, N]
        out[k] += np.linalg.solve(gram + lam * np.eye(len(gram)), x.T @ residual).T.astype(np.float32)
    return out


def retrieval_index(
    model,
    region_proj: np.ndarray,
    value_proj: np.ndarray,
    *,
    split_proj: np.ndarray,
    clusters: int = RETRIEVAL_CLUSTERS,
    sample: int = RETRIEVAL_USERS,
    seed: int = RETRIEVAL_SEED,
    fit_users: int = RETRIEVAL_FIT_USERS,
) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [K, A], tables [K, N, D+1]) from the catalog's tables (`split_proj`: the serving form of
    `region_proj`, which the caller holds already). With `clusters` or `sample` 0 (or attention off): one
    table with uniform weights 1/R (exact for VECF(-att)), not fitted."""
    users = np.asarray(model.user_embedding)

    def tables(members):
        return np.asarray(
            model.retrieval_vectors(model.item_embedding, model.item_bias, region_proj, value_proj, members),
            np.float32,
        )

    if clusters < 1 or sample < 1 or not model.use_attention:
        return np.zeros((1, model.attention_dim), np.float32), tables(None)[None]
    rng = np.random.default_rng(seed)
    members = users[np.sort(rng.choice(len(users), min(sample, len(users)), replace=False))]
    queries = np.asarray(model.attention.project_users(members), np.float32)  # [U, A]
    centroids, assignment = kmeans(queries, clusters, seed)
    start = np.stack([tables(members[assignment == c]) for c in range(len(centroids))])
    if fit_users < 1:
        return centroids.astype(np.float32), start
    fitted = users[np.sort(rng.choice(len(users), min(fit_users, len(users)), replace=False))]
    return centroids.astype(np.float32), fit_tables(model, split_proj, value_proj, centroids, start, fitted)
