""" "Because you bought": for each recommended item, the few items of the shopper's history it resembles
most where the shopper's attention map looks.

Each (shopper, item) pair has an attended-region vector, the item's region vectors weighted by the
shopper's attention over them: a_u(i) = sum_l alpha_l(u, i) v_i^l. The history item h named for a
recommended item i is the one with the largest cosine cos(a_u(i), a_u(h)): the same shopper's attention
over both photos, so what is compared is what this shopper looks at. The recommended item itself is never
named (a re-buy's nearest past purchase would be itself). Written once with `keras.ops`; the export's
`because` signature and offline evaluation call it.
"""

from __future__ import annotations

from keras import ops

NAMED = 3  # history items named per recommended item


def attended(alpha, vectors):
    """alpha [B, X, R] (attention over each item's regions), vectors [B, X, R, E] (the items' region vectors)
    -> [B, X, E] unit attended-region vectors."""
    out = ops.einsum("bxr,bxre->bxe", alpha, vectors)
    return out / ops.maximum(ops.norm(out, axis=-1, keepdims=True), 1e-12)


def name_from_history(items, item_vectors, history, history_vectors, named: int = NAMED):
    """items [B, K] rows recommended, item_vectors [B, K, E] their `attended` vectors; history [B, H] rows
    (-1 empty), history_vectors [B, H, E] -> (history rows [B, K, n], cosines [B, K, n]) with n = min(named,
    H), most similar first; rows -1 (cosine -inf) where the history has fewer items to name."""
    cosine = ops.einsum("bke,bhe->bkh", item_vectors, history_vectors)  # [B, K, H]
    usable = ops.logical_and(history[:, None, :] >= 0, history[:, None, :] != items[:, :, None])
    cosine = ops.where(usable, cosine, -float("inf"))
    n = min(named, history.shape[1]) if isinstance(history.shape[1], int) else named
    values, top = ops.top_k(cosine, n)  # [B, K, n]
    rows = ops.take_along_axis(ops.broadcast_to(history[:, None, :], ops.shape(cosine)), top, axis=2)
    return ops.where(values > -float("inf"), rows, -1), values
