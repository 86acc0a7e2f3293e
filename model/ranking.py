"""What the served model computes around VECF's score: the user state, the repeat-purchase boost, the
new-item slots and the final ranking, written once with `keras.ops`.

The export (`offline.serving.module`, TensorFlow) wraps these functions in its signatures; offline
evaluation and validation (`offline.recommenders.vecf.VECFRecommender`, any Keras backend) rank through the same
functions. So the Recall the benchmarks report is the ranking customers are served.

The functions read a mapping of tables (numpy arrays, backend tensors or tf.Variables), built by
`offline.recommenders.repeats` and `offline.recommenders.newitems`:

- always: `user_vectors` [U, D]
- with repeat slots (`Layout.slots` = H > 0): `repeat_offsets` [U + 1] int64, `repeat_items` [nnz] int32 and
  `repeat_boosts` [nnz] float32: user u's newest distinct purchases at [offsets[u], offsets[u + 1]), each
  with its boost (repeat weight * score spread * log1p(purchase count));
- with new-item slots (`Layout.every` > 0): `new_rows` [M] int32 (the catalog rows of the items without a
  training purchase), `is_new` [N] bool, `taste_vectors` [N, P] (unit visual vectors),
  `new_matrix` [M, P + 1] (the new items' visual vectors and trend, each scaled by its weight) and, with
  attributes (`Layout.attribute_values` > 0), `attribute_codes` [N, A] and `new_codes` [M, A] (each
  attribute's value index, offset so that all attributes share one numbering).

The user state is `model.contract`'s layout: [p_u (D) | repeat rows as float (H) | boosts (H) | the P best
new items' rows as float]. Every `every`-th place of a ranking (places every-1, 2*every-1, ...) holds the next
new item by the new-item score; the places between hold the other items by VECF's score plus the boosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keras import ops

from model import contract

Tables = Mapping[str, Any]


@dataclass(frozen=True)
class Layout:
    """The static sizes the ranking is built for (the export writes them to serving.json)."""

    dim: int  # D
    slots: int = 0  # H: repeat slots in the user state (0: no boost, no history for the new items)
    every: int = 0  # new-item slots every `every`-th place (0: none)
    picks: int = 0  # P: best new items the user state carries
    attribute_values: int = 0  # V: values of all new-item attributes together
    new_items: bool = False  # the tables hold the new-item score's (the slots and the "new_for_you" shelf)

    def __post_init__(self) -> None:
        check_every(self.every)
        if self.every and not self.new_items:
            raise ValueError("new-item slots need the new-item tables (new_items=True)")


def check_every(every: int) -> None:
    if every != 0 and every < 2:
        raise ValueError(f"new_item_every must be 0 (no slots) or >= 2, got {every}")


def _minimum(a, b):
    """min that stays a Python int for ints (JAX's top_k wants a static k) and is an op for tensors."""
    return min(a, b) if isinstance(a, int) and isinstance(b, int) else ops.minimum(a, b)


def _maximum(a, b):
    return max(a, b) if isinstance(a, int) and isinstance(b, int) else ops.maximum(a, b)


# -- the user state ---------------------------------------------------------------------------
def repeat_slots(tables: Tables, layout: Layout, users):
    """users [B] int (-1: unknown) -> (item rows [B, H] int32, -1 padded; their boosts [B, H], 0 padded)."""
    h = layout.slots
    users = ops.cast(users, "int64")
    known = users >= 0
    safe = ops.maximum(users, 0)
    offsets = ops.cast(tables["repeat_offsets"], "int64")
    start = ops.take(offsets, safe)  # [B]
    length = ops.where(known, ops.minimum(ops.take(offsets, safe + 1) - start, h), 0)
    place = ops.arange(h, dtype="int64")[None, :]  # [1, H]
    used = place < length[:, None]  # [B, H]
    position = ops.where(used, start[:, None] + place, 0)
    rows = ops.where(used, ops.cast(ops.take(tables["repeat_items"], position), "int32"), -1)
    boosts = ops.where(used, ops.take(tables["repeat_boosts"], position), 0.0)
    return rows, ops.cast(boosts, "float32")


def user_state(tables: Tables, layout: Layout, users):
    """users [B] int (-1: unknown) -> (user states [B, D + 2H + P] float32, known [B] bool). An unknown
    user gets p_u = 0 and no history: their new items rank by the trend alone."""
    users = ops.cast(users, "int64")
    known = users >= 0
    vectors = ops.take(tables["user_vectors"], ops.maximum(users, 0), axis=0)
    vectors = ops.cast(vectors, "float32") * ops.cast(known, "float32")[:, None]
    slots = repeat_slots(tables, layout, users) if layout.slots else (None, None)
    return assemble_state(tables, layout, vectors, *slots), known


def assemble_state(tables: Tables, layout: Layout, vectors, rows=None, boosts=None):
    """p_u [B, D] and the repeat slots (rows [B, H], boosts [B, H]; None without slots) -> user states
    [B, D + 2H + P]: the layout above, with the P best new items for this history ranked once here (their
    order depends on the user alone), not per request."""
    parts = [vectors] if rows is None else [vectors, ops.cast(rows, "float32"), boosts]
    if layout.picks:
        best = ops.top_k(new_item_scores(tables, layout, rows, ops.shape(vectors)[0]), layout.picks)[1]
        parts.append(ops.cast(ops.take(tables["new_rows"], best), "float32"))
    return ops.concatenate(parts, axis=1)


def split_state(state, layout: Layout):
    """User states -> (p_u [B, D], repeat rows [B, H] int32 (-1 empty), boosts [B, H]); None, None without slots."""
    embedding, rows, boosts = contract.split_user_state(state, layout.dim, layout.slots)
    if not layout.slots:
        return embedding, None, None
    return embedding, ops.cast(ops.round(rows), "int32"), boosts


# -- the repeat-purchase boost ----------------------------------------------------------------
def dense_boosts(rows, boosts, num_items):
    """repeat rows [B, H] (-1 empty) and boosts [B, H] -> [B, N]: each user's boosts over the catalog."""
    b, h = ops.shape(rows)[0], ops.shape(rows)[1]
    batch = ops.repeat(ops.arange(b, dtype="int32")[:, None], h, axis=1)  # [B, H]
    indices = ops.stack([batch, ops.maximum(rows, 0)], axis=-1)  # padding adds 0 to item 0
    return ops.scatter(indices, ops.where(rows >= 0, boosts, 0.0), (b, num_items))


def catalog_boosts(state, layout: Layout, num_items):
    """[B, N]: the boosts the user states carry, over the whole catalog; None without repeat slots. The one
    way the boost is applied: added to a whole row, or gathered at the rows being scored."""
    _, rows, boosts = split_state(state, layout)
    return None if rows is None else dense_boosts(rows, boosts, num_items)


def boosted_scores(scores, state, layout: Layout):
    """VECF's scores [B, N] of the whole catalog plus the boosts the user states carry."""
    dense = catalog_boosts(state, layout, ops.shape(scores)[1])
    return scores if dense is None else scores + dense


def boosted_items(scores, items, dense):
    """VECF's scores [B, X] of catalog rows `items` [B, X] plus their boosts (`catalog_boosts`, None: none)."""
    return scores if dense is None else scores + ops.take_along_axis(dense, items, 1)


# -- new items --------------------------------------------------------------------------------
def new_item_scores(tables: Tables, layout: Layout, rows, batch):
    """History rows [B, H] (-1 empty; None: no history) -> the new-item score [B, M] of each new item:
    the cosine of its visual vector with the mean of the history's, the shares of the history with each
    of its attribute values and its trend, each weighted as `new_matrix` holds them
    (`offline.recommenders.newitems`)."""
    matrix = tables["new_matrix"]  # [M, P + 1]
    if rows is None:  # the trend alone
        return ops.broadcast_to(matrix[:, -1][None], (batch, ops.shape(matrix)[0]))
    used = ops.cast(rows >= 0, "float32")  # [B, H]
    safe = ops.maximum(rows, 0)
    profile = ops.sum(ops.take(tables["taste_vectors"], safe, axis=0) * used[..., None], axis=1)  # [B, P]
    profile = profile / ops.maximum(ops.norm(profile, axis=1, keepdims=True), 1e-12)
    out = ops.matmul(ops.concatenate([profile, ops.ones_like(profile[:, :1])], axis=1), ops.transpose(matrix))
    if layout.attribute_values:
        codes = ops.one_hot(ops.take(tables["attribute_codes"], safe, axis=0), layout.attribute_values)  # [B, H, A, V]
        share = ops.sum(codes * used[:, :, None, None], axis=(1, 2))  # [B, V]
        share = share / ops.maximum(ops.sum(used, axis=1, keepdims=True), 1.0)
        out = out + ops.sum(ops.take(share, tables["new_codes"], axis=1), axis=-1)  # [B, M, A] -> [B, M]
    return out


def slot_counts(layout: Layout, num_new, num_items, k):
    """(places for new items, places for the others) in a top-k, k <= the catalog's size."""
    fresh = _maximum(_minimum(k // layout.every, num_new), k - (num_items - num_new))
    return fresh, k - fresh


def new_picks(tables: Tables, layout: Layout, state, fresh):
    """Catalog rows [B, fresh] of each user's best new items: from the state where it carries that many,
    else ranked now."""
    _, rows, _ = split_state(state, layout)

    def ranked():
        scores = new_item_scores(tables, layout, rows, ops.shape(state)[0])
        return ops.take(tables["new_rows"], ops.top_k(scores, fresh)[1])

    def carried():
        picks = contract.new_item_picks(state, layout.dim, layout.slots, layout.picks)
        return ops.cast(ops.round(picks[:, :fresh]), "int32")

    if not layout.picks:
        return ranked()
    if isinstance(fresh, int):
        return carried() if fresh <= layout.picks else ranked()
    return ops.cond(fresh <= layout.picks, carried, ranked)


def interleave(layout: Layout, old, new):
    """Ranked rows [B, W] of items with purchases and [B, S] of new ones -> ([B, W + S] in slot order, the
    permutation of their concatenation that gives it)."""
    w, s = ops.shape(old)[1], ops.shape(new)[1]
    r = ops.arange(w, dtype="int32")
    places = ops.concatenate([r + r // (layout.every - 1), (ops.arange(s, dtype="int32") + 1) * layout.every - 1], 0)
    order = ops.argsort(places)  # distinct places: any sort gives the same order
    return ops.take(ops.concatenate([old, new], axis=1), order, axis=1), order


# -- rankings ---------------------------------------------------------------------------------
def rank(tables: Tables, layout: Layout, state, scores, k):
    """The served top-k: scores [B, N] (VECF's, boosts added) -> catalog rows [B, k] best first, with the
    new-item slots; ties go to the lower row. k above N counts as N."""
    n = ops.shape(scores)[1]
    k = _minimum(k, n)
    if not layout.every:
        return ops.cast(ops.top_k(scores, k)[1], "int32")
    fresh, rest = slot_counts(layout, ops.shape(tables["new_rows"])[0], n, k)
    old = ops.top_k(ops.where(tables["is_new"][None], -float("inf"), scores), rest)[1]
    return interleave(layout, ops.cast(old, "int32"), new_picks(tables, layout, state, fresh))[0]


def rank_candidates(tables: Tables, layout: Layout, state, candidates, score, k, dense=None):
    """Stage 2 of two-stage ranking. candidates [B, C] (stage 1's rows, C >= k), `score` a function of
    rows [B, X] -> (VECF's scores [B, X], attention [B, X, R]), `dense` the states' `catalog_boosts` ->
    (rows [B, k], their scores [B, k] with boosts, their attention [B, k, R]): the candidates ranked as
    `rank` ranks the catalog. New items enter through their slots, scored in the same call as the
    candidates (they were never bought, so they have no boost)."""
    c = ops.shape(candidates)[1]
    if layout.every:
        fresh, rest = slot_counts(layout, ops.shape(tables["new_rows"])[0], ops.shape(tables["is_new"])[0], k)
        new = new_picks(tables, layout, state, fresh)
        scored = ops.concatenate([candidates, new], axis=1)  # [B, C + S]
    else:
        scored = candidates
    scores, alpha = score(scored)
    scores = boosted_items(scores, scored, dense)
    if not layout.every:
        values, top = ops.top_k(scores, k)
        return ops.take_along_axis(scored, top, 1), values, ops.take_along_axis(alpha, top[..., None], 1)
    # among the candidates that are not new (some are only when C exceeds the items with purchases)
    top = ops.top_k(ops.where(ops.take(tables["is_new"], candidates), -float("inf"), scores[:, :c]), rest)[1]
    top = ops.cast(top, "int32")
    merged, order = interleave(layout, ops.take_along_axis(candidates, top, 1), new)
    places = ops.concatenate([top, c + ops.zeros_like(new) + ops.arange(fresh, dtype="int32")[None]], axis=1)
    places = ops.take(places, order, axis=1)  # [B, k] columns of `scored`, in slot order
    return merged, ops.take_along_axis(scores, places, 1), ops.take_along_axis(alpha, places[..., None], 1)


# -- shelves ------------------------------------------------------------------------------------
# A shop shows a customer's re-buys, the rest and the new arrivals apart (`model.contract.SHELVES`). Each
# shelf is the served model's own ranking of a part of the catalog: "buy_again" the history the state
# carries, by VECF's score plus the boost; "for_you" every item outside it, ranked as `rank` ranks the
# catalog (new-item slots included); "new_for_you" the items nobody has bought yet, in the new-item
# scorer's order (what fills the slots). Rows past the end of a short shelf are -1.


def history_mask(state, layout: Layout, num_items):
    """[B, N] bool: the items among the history rows the user states carry (all False without slots)."""
    _, rows, _ = split_state(state, layout)
    if rows is None:
        return ops.zeros((ops.shape(state)[0], num_items), "bool")
    return dense_boosts(rows, ops.cast(rows >= 0, "float32"), num_items) > 0


def _padded(rows, values, alpha, k):
    """rows [B, X] (-1 empty), values [B, X], alpha [B, X, R] -> the same with X padded to k columns."""
    missing = k - ops.shape(rows)[1]
    if isinstance(missing, int) and missing <= 0:
        return rows, values, alpha
    rows = ops.pad(rows, [[0, 0], [0, missing]], constant_values=-1)
    values = ops.pad(values, [[0, 0], [0, missing]], constant_values=-float("inf"))
    return rows, values, ops.pad(alpha, [[0, 0], [0, missing], [0, 0]])


def buy_again(layout: Layout, state, score, k):
    """The shelf of past purchases: `score` as in `rank_candidates` -> (rows [B, k], their scores with the
    boost [B, k], attention [B, k, R]); the history's H items at most, -1 after them."""
    _, rows, boosts = split_state(state, layout)
    scores, alpha = score(ops.maximum(rows, 0))  # [B, H]
    scores = ops.where(rows >= 0, scores + boosts, -float("inf"))
    values, top = ops.top_k(scores, _minimum(k, layout.slots))
    rows = ops.where(ops.isfinite(values), ops.take_along_axis(rows, top, 1), -1)
    return _padded(rows, values, ops.take_along_axis(alpha, top[..., None], 1), k)


def new_for_you(tables: Tables, layout: Layout, state, score, k):
    """The shelf of items nobody has bought yet, best first by the new-item score -> (rows [B, k], VECF's
    scores [B, k], attention [B, k, R]); all of them at most, -1 after them."""
    fresh = _minimum(k, ops.shape(tables["new_rows"])[0])
    rows = ops.cast(new_picks(tables, layout, state, fresh), "int32")
    scores, alpha = score(rows)
    return _padded(rows, scores, alpha, k)


def nothing(state, score, k):
    """An empty shelf (rows -1, scores -inf) in the shapes `score` gives: for a shelf the model has nothing
    for (no history in its states, or no new items)."""
    rows = -ops.ones((ops.shape(state)[0], k), "int32")
    _, alpha = score(ops.zeros_like(rows))
    return rows, ops.full(ops.shape(rows), -float("inf")), ops.zeros_like(alpha)


def rank_shelf(tables: Tables, layout: Layout, state, shelf: str, k, score, ranked):
    """The top k of `shelf` (`model.contract.SHELVES`) -> (rows [B, k], scores [B, k], attention [B, k, R]),
    rows -1 past a short shelf's end. `score`: rows [B, X] -> VECF's (scores, attention); `ranked(for_you)`:
    the whole catalog's ranking (`rank` or two stages), without the history when `for_you`."""
    if shelf == "all":
        return ranked(False)
    if shelf == "for_you":
        rows, values, alpha = ranked(True)
        return ops.where(values > -float("inf"), rows, -1), values, alpha  # a catalog smaller than k + history
    if shelf == "buy_again":
        return buy_again(layout, state, score, k) if layout.slots else nothing(state, score, k)
    if shelf == "new_for_you":
        return new_for_you(tables, layout, state, score, k) if layout.new_items else nothing(state, score, k)
    raise ValueError(f"shelf must be one of {contract.SHELVES}, got {shelf!r}")


def for_you_scores(scores, state, layout: Layout):
    """VECF's scores [B, N] with the history the states carry at -inf: `rank` then gives the "for_you"
    shelf (no boost: nothing on it was bought)."""
    return ops.where(history_mask(state, layout, ops.shape(scores)[1]), -float("inf"), scores)


def nearest_centroid(queries, centroids):
    """queries [U, A], centroids [K, A] -> index [U] int32 of each query's nearest centroid (stage 1's
    retrieval table)."""
    distance = ops.sum(ops.square(queries[:, None, :] - centroids[None]), axis=-1)  # [U, K]
    return ops.cast(ops.argmin(distance, axis=1), "int32")
