"""A shopper the model never saw, from their history: the user state the exported model serves them.

Most of a shop's traffic is customers who came after the last training run. Their p_u is folded in: with
the item side frozen, p_u minimises the loss training minimised for a user, with the attention held at
its average over the photo,

    L(p) = mean_{h in history, j in negatives} softplus(s(p, j) - s(p, h)) + FOLD_IN_L2 |p|^2,
    s(p, i) = [p, 1] . r_i,  r_i = [q_i, b_i] + mean_l W_v f_i^l

(BPR against the items with training purchases, the negatives training draws from). s is linear in p,
so L is a logistic loss plus a ridge: strictly convex, and a few Newton steps of [D, D] systems solve it
over the whole catalog in milliseconds. The exact score, attention included, then ranks with that p.

FOLD_IN_L2 was chosen on H&M's validation window, with 20% of its customers left out of training and
folded in: Recall@50 0.0153 / 0.0188 / 0.0300 / 0.0300 / 0.0306 at 0.1 (training's l2) / 0.3 / 1 / 3 /
10, against 0.0300 for p = 0 and 0.0656 for the same customers trained with. A folded-in p ranks
hardly better than none; most of what training with a customer adds is on the item side (their own
purchases in the items' factors and biases), which a fold-in cannot recover. The attention reads p's
direction alone (`model.attention`), so the maps stay the shopper's own however short p is.

The rest of the state comes from the same history as for a trained user (`model.ranking.user_state`):
the repeat slots hold its newest distinct items, newest first, each boosted by unit * log1p(its
count), and the new-item picks are ranked from those rows. Written once with `keras.ops`: the export's
signature and offline evaluation call these functions.
"""

from __future__ import annotations

from keras import ops

from model import ranking

FOLD_IN_L2 = 3.0
# Newton steps. L is smooth and strongly convex, so Newton converges quadratically: on H&M's folded-in
# customers the fourth step already moves p by float32 round-off alone; the fifth is margin.
FOLD_IN_STEPS = 5


def item_vectors(items, biases, value_proj):
    """items [N, D], biases [N], value_proj [N, R, D+1] -> r [N, D+1]: each item's score as a linear function
    of [p, 1], with the attention at its average over the regions."""
    return ops.concatenate([items, biases[:, None]], axis=1) + ops.mean(ops.cast(value_proj, "float32"), axis=1)


def history_slots(history, slots: int, unit):
    """history [B, L] catalog rows, oldest first (-1: padding or unknown) -> (rows [B, H] int32 of the H
    newest distinct items, newest first, -1 padded; boosts [B, H] = unit * log1p(times bought))."""
    history = ops.cast(history, "int32")
    b, length = ops.shape(history)[0], ops.shape(history)[1]
    if length < slots:  # top_k below needs at least H columns
        history = ops.concatenate([history, -ops.ones((b, slots - length), "int32")], axis=1)
        length = slots
    valid = history >= 0
    same = ops.logical_and(history[:, :, None] == history[:, None, :], valid[:, None, :])  # [B, L, L]
    later = ops.arange(length)[None, :] > ops.arange(length)[:, None]  # [L, L]: column after row
    last = ops.logical_and(valid, ops.logical_not(ops.any(ops.logical_and(same, later[None]), axis=2)))
    counts = ops.sum(ops.cast(same, "float32"), axis=2)  # [B, L]
    key = ops.where(last, ops.cast(ops.arange(length), "float32")[None], -1.0)  # newest distinct first
    key, place = ops.top_k(key, slots)
    used = key >= 0
    rows = ops.where(used, ops.take_along_axis(history, place, 1), -1)
    boosts = ops.where(used, unit * ops.log1p(ops.take_along_axis(counts, place, 1)), 0.0)
    return rows, ops.cast(boosts, "float32")


def fold_in(vectors, history, negatives, l2: float = FOLD_IN_L2, steps: int = FOLD_IN_STEPS):
    """p [B, D] minimising L above. vectors [N, D+1] (`item_vectors`); history [B, L] catalog rows (-1:
    none); negatives [N] float, 1 for the items negatives are drawn from. A history with no item known
    gets p = 0, as an unknown user does."""
    vectors = ops.cast(vectors, "float32")
    a, c = vectors[:, :-1], vectors[:, -1]  # s(p, i) = p . a_i + c_i
    d = ops.shape(a)[1]
    history = ops.cast(history, "int32")
    valid = ops.cast(history >= 0, "float32")  # [B, L]
    a_h = ops.take(a, ops.maximum(history, 0), axis=0)  # [B, L, D]
    c_h = ops.take(c, ops.maximum(history, 0), axis=0)  # [B, L]
    nu = ops.cast(negatives, "float32")
    scale = 1.0 / ops.maximum(ops.sum(valid, axis=1) * ops.sum(nu), 1.0)  # [B]: 1 / the terms averaged over
    ridge = 2.0 * l2 * ops.eye(d)[None]  # [1, D, D]
    p = ops.zeros((ops.shape(history)[0], d), "float32")
    for _ in range(steps):
        s = ops.matmul(p, ops.transpose(a)) + c[None]  # [B, N]
        s_h = ops.einsum("bld,bd->bl", a_h, p) + c_h  # [B, L]
        sig = ops.sigmoid(s[:, None, :] - s_h[..., None]) * nu[None, None, :] * valid[..., None]  # [B, L, N]
        w = sig * (1.0 - sig)
        # d s_j / dp - d s_h / dp = a_j - a_h: gradient and Hessian summed over (h, j) without the [B, L, N, D]
        grad = ops.matmul(ops.sum(sig, axis=1), a) - ops.einsum("bl,bld->bd", ops.sum(sig, axis=2), a_h)
        w_j = ops.sum(w, axis=1)  # [B, N]
        # as products of two: TensorFlow runs a three-operand einsum over N at several times their cost
        hess = ops.matmul(ops.transpose(a[None] * w_j[:, :, None], (0, 2, 1)), a)
        cross = ops.matmul(ops.transpose(ops.matmul(w, a), (0, 2, 1)), a_h)
        hess = hess - cross - ops.transpose(cross, (0, 2, 1))
        hess = hess + ops.einsum("bl,bld,blk->bdk", ops.sum(w, axis=2), a_h, a_h)
        grad = grad * scale[:, None] + 2.0 * l2 * p
        p = p - ops.solve(hess * scale[:, None, None] + ridge, grad[..., None])[..., 0]
    return p


def history_state(tables, layout: ranking.Layout, history, negatives, unit, l2: float = FOLD_IN_L2):
    """history [B, L] catalog rows, oldest first (-1: none) -> (user states [B, D + 2H + P] as
    `ranking.user_state` lays them out, known [B] bool: the history holds an item of the catalog). Reads
    `tables["fold_vectors"]` (`item_vectors`); `unit`: the repeat boost per log1p(count), 0 without it."""
    known = ops.any(ops.cast(history, "int32") >= 0, axis=1)
    vectors = fold_in(tables["fold_vectors"], history, negatives, l2)
    slots = history_slots(history, layout.slots, unit) if layout.slots else (None, None)
    return ranking.assemble_state(tables, layout, vectors, *slots), known
