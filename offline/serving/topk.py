"""An exact top-k for the exported graph that reads most of a large row only once.

`tf.math.top_k` of 2,000 among 200,000 scores costs 1.6 ms of CPU: it keeps a heap of k entries
while it scans the row. Stage 1 of two-stage ranking needs exactly that per request. A strided sample of
the row gives a value that, with overwhelming probability, at least k entries reach; the entries that
reach it are few (k plus a few standard deviations), and their top k is the row's top k, ties included. When fewer
than k reach the bound (a contrived row), the graph falls back to `tf.math.top_k` on the whole row, so
the answer is always exact; only its cost varies.
"""

from __future__ import annotations

from typing import Any

SAMPLE = 4096  # entries of the strided sample of each row
SIGMAS = 4.0  # the bound's sample rank: the k-th entry's expected rank plus this many standard deviations
MARGIN = 8  # and this many ranks
MAX_KEPT_SHARE = 4  # prune only when at most 1/4 of a row is expected to reach the bound
MIN_STRIDE = 8  # and rows of at least 8 * SAMPLE entries: at 24,717 (H&M) tf.math.top_k is as fast
MIN_ROW = MIN_STRIDE * SAMPLE


def top_k_for(row: int):
    """The top-k function for rows of `row` entries known when the graph is built: `top_k_indices`
    where it can prune, else `tf.math.top_k`'s indices without the ops that decide it at run time."""
    import tensorflow as tf

    return top_k_indices if row >= MIN_ROW else (lambda values, k: tf.math.top_k(values, k=k).indices)


def top_k_indices(values: Any, k: Any) -> Any:
    """values [B, N] float32, k a scalar int32 in [0, N] -> int32 indices [B, k] of each row's k largest,
    best first, lower index first among equal values: what `tf.math.top_k(values, k).indices` returns."""
    import tensorflow as tf

    b, n = tf.shape(values)[0], tf.shape(values)[1]
    stride = tf.maximum(n // SAMPLE, 1)
    sample = values[:, ::stride]  # [B, S]
    s = tf.shape(sample)[1]
    # The sample holds Binomial(s, k/n) of the row's top k: mean k*s/n (float: k*s can pass 2**31), at
    # most its standard deviation sqrt(mean). The bound is the sample's entry SIGMAS of those past the mean.
    expected = tf.cast(k, tf.float32) * tf.cast(s, tf.float32) / tf.cast(n, tf.float32)
    rank = tf.minimum(tf.cast(tf.math.ceil(expected + SIGMAS * tf.sqrt(expected)), tf.int32) + MARGIN, s)

    def full() -> Any:
        return tf.math.top_k(values, k=k).indices

    def pruned() -> Any:
        bound = tf.math.top_k(sample, k=rank).values[:, -1:]  # [B, 1]
        keep = values >= bound  # [B, N]
        counts = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)  # [B]

        def one_row() -> Any:  # most requests: no scatter into a padded [B, M]
            cols = tf.cast(tf.where(tf.reshape(keep, [-1]))[:, 0], tf.int32)  # [M], ascending
            kept = tf.gather(tf.reshape(values, [-1]), cols)
            return tf.gather(cols, tf.math.top_k(kept, k=k).indices)[None]

        def gather_kept() -> Any:
            where = tf.cast(tf.where(keep), tf.int32)  # [M, 2], row-major: each row's entries in index order
            row, col = where[:, 0], where[:, 1]
            place = tf.range(tf.shape(row)[0]) - tf.gather(tf.cumsum(counts, exclusive=True), row)
            slots = tf.stack([row, place], axis=1)
            shape = tf.stack([b, tf.reduce_max(counts)])
            # padding sorts after every kept entry: each row keeps at least k, so top k never reaches it
            kept = tf.tensor_scatter_nd_update(tf.fill(shape, -float("inf")), slots, tf.gather_nd(values, where))
            cols = tf.scatter_nd(slots, col, shape)
            return tf.gather(cols, tf.math.top_k(kept, k=k).indices, batch_dims=1)

        return tf.cond(tf.reduce_min(counts) >= k, lambda: tf.cond(b == 1, one_row, gather_kept), full)

    worth = (b > 0) & (k > 0) & (rank * MAX_KEPT_SHARE <= s) & (stride >= MIN_STRIDE)
    return tf.cond(worth, pruned, full)
