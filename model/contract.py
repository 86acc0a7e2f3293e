"""The exported model's serving contract: one source of truth, free of TensorFlow.

`offline.serving.export` writes a SavedModel with exactly these signatures; the gateway's backends
(`service.backend`) call them. A test checks the two agree.

Layout of an export::

    EXPORT_DIR/<version>/saved_model.pb, variables/
    EXPORT_DIR/<version>/assets.extra/catalog.csv   CATALOG_COLUMNS: item_id, image, a box, new, title, category
    EXPORT_DIR/<version>/assets.extra/serving.json  see SERVING_META_KEYS

`image` is relative to `serving.json["image_root"]`. The box is the region of the original image,
in its own pixel coordinates, that the CNN's grid covered (it may reach outside the photo where the
image was padded to a square), so a heatmap upsampled onto that box lands on the right pixels.
`new` is 1 for an item without training purchases (what the new-item slots below draw from), else 0.
`title` and `category` are the catalog's, for people to read (empty where it has none; CATEGORY_ATTRIBUTES).

The user state: USER_EMBEDDING's `embedding` output, which every ranking signature takes back (and the
gateway caches), is [B, D + 2H + P] with D = `embedding_dim`, H = `repeat_slots`, P = `new_item_picks`:
`[p_u (D) | item rows of u's H newest repeat purchases, as float32, -1 empty (H) | their score boosts (H)
| rows of u's P best new items for the new-item slots, as float32, best first (P)]`
(offline.recommenders.repeats, offline.recommenders.newitems). H is 0 for models without the
repeat-purchase boost and P for models without new-item slots; without either the state is p_u alone.
Callers treat it as opaque: the
layout is the exported model's to read. The item rows also feed the new-item slots, which is why a
model may carry them with all boosts 0.

With new-item slots, RECOMMEND and RECOMMEND_CANDIDATES keep every `new_item_every`-th place for an item
without training purchases; `scores` stay the model's own score of each item (what SCORE returns), so
they are not descending at those places.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SAVED_MODEL_FILE = "saved_model.pb"
ASSETS_EXTRA = "assets.extra"
CATALOG_FILE = "catalog.csv"
SERVING_META_FILE = "serving.json"
CATALOG_COLUMNS = ("item_id", "image", "box_left", "box_top", "box_right", "box_bottom", "new", "title", "category")
CATALOG_COLUMNS_BEFORE_TEXT = CATALOG_COLUMNS[:7]  # older exports: no title or category
CATALOG_COLUMNS_BEFORE_NEW = CATALOG_COLUMNS[:6]  # older still: their items read as not new too
# The catalog attribute an export shows as an item's category: the first of these the catalog has.
CATEGORY_ATTRIBUTES = ("category", "product_type", "product_group")
SERVING_META_KEYS = (
    "model_name",  # str
    "version",  # int, equals the version folder's name
    "grid_rows",  # int
    "grid_cols",  # int
    "embedding_dim",  # int
    "num_items",  # int
    "num_users",  # int
    "image_root",  # str, absolute path of the images when exported (may be overridden by settings)
    "created",  # ISO-8601 UTC
    "repeat_slots",  # int, H of the user state (see above)
    # int, every how many places the rankings hold a new item (offline.recommenders.newitems); 0: never
    "new_item_every",
    "new_item_picks",  # int, P of the user state (see above)
    # int, candidates two-stage ranking needs to keep 0.99 of the exact top 50, measured at export
    # (offline.serving.candidates); the gateway's default; 0: rank the whole catalog exactly
    "candidates",
)


def version_numbers(base: Path | str) -> list[int]:
    """The version folders under an export base, ascending: numbered folders that hold a SavedModel
    (the export writes a version beside its final name and renames it, so a half-written one has none)."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / SAVED_MODEL_FILE).is_file())


# Keys added after the first exports, with the value an older export implies.
SERVING_META_DEFAULTS = {"repeat_slots": 0, "new_item_every": 0, "new_item_picks": 0, "candidates": 0}


# Where a ranked item's place comes from (the gateway's `source` of each item):
# - "vecf": VECF's own score;
# - "repeat_boost": VECF's score plus the repeat-purchase boost (the user bought the item before);
# - "new_item_slot": a place kept for new items (a new-item slot, or the "new_for_you" shelf), filled by
#   the new-item scorer (offline.recommenders.newitems), not VECF's score;
# - "popularity": the training purchase counts, for a user the model does not know.
PLACE_SOURCES = ("vecf", "repeat_boost", "new_item_slot", "popularity")


def place_source(personalized: bool, new: bool, repeat_boost: float, new_item_every: int, shelf: str = "all") -> str:
    """The PLACE_SOURCES entry of one item in a ranking of `shelf` (SHELVES). With slots (`new_item_every`
    > 0) the rankings hold new items only in their slots, so every new item there got its place from the
    new-item scorer; the "new_for_you" shelf is in that scorer's order for every shopper."""
    if shelf == "new_for_you":
        return "new_item_slot"
    if not personalized:
        return "popularity"
    if new and new_item_every > 0:
        return "new_item_slot"
    return "repeat_boost" if repeat_boost > 0 else "vecf"


def new_item_picks(state, embedding_dim: int, repeat_slots: int, picks: int):
    """User states [B, D + 2H + P] -> the P best new items' catalog rows [B, P] as stored (float, best first)."""
    start = embedding_dim + 2 * repeat_slots
    return state[:, start : start + picks]


def split_user_state(state, embedding_dim: int, repeat_slots: int) -> tuple:
    """User states [B, D + 2H] (any array type that slices) -> (embeddings [B, D], item rows [B, H] as
    stored (float; -1 empty), boosts [B, H]); the rows and boosts are None when H is 0."""
    embedding = state[:, :embedding_dim]
    if not repeat_slots:
        return embedding, None, None
    return (
        embedding,
        state[:, embedding_dim : embedding_dim + repeat_slots],
        state[:, embedding_dim + repeat_slots : embedding_dim + 2 * repeat_slots],
    )


@dataclass(frozen=True)
class Signature:
    """A named SavedModel signature: input and output tensor names with dtype and shape. `added_outputs`
    names outputs added after the first exports: an older export lacks them and callers read them as None."""

    name: str
    inputs: dict[str, tuple[str, tuple[int | None, ...]]]
    outputs: dict[str, tuple[str, tuple[int | None, ...]]]
    added_outputs: tuple[str, ...] = ()

    @property
    def required_outputs(self) -> tuple[str, ...]:
        """The outputs every export of this signature has."""
        return tuple(name for name in self.outputs if name not in self.added_outputs)


# Shapes: None is a free dimension; B = batch, D = embedding size, K = k, N = items asked about,
# H x W = attention grid (rows x cols). `embedding` is the user state above ([B, D + 2 * repeat_slots]).
USER_EMBEDDING = Signature(
    "user_embedding",
    inputs={"user_id": ("string", (None,))},
    outputs={"embedding": ("float32", (None, None)), "known": ("bool", (None,))},
)
# A shopper the model was not trained on: their recent item ids, oldest first, padded with "" (ids not in
# the catalog are ignored) -> a user state as USER_EMBEDDING gives one, folded in from the history
# (model.foldin); known is false where no id is in the catalog (the state of an unknown user then).
HISTORY_EMBEDDING = Signature(
    "history_embedding",
    inputs={"history": ("string", (None, None))},
    outputs={"embedding": ("float32", (None, None)), "known": ("bool", (None,))},
)
# "Because you bought" (model.because) for each ranked item, as BECAUSE below answers it, comes with every
# ranking: one model call per request. Exports from before it lack these outputs.
BECAUSE_OUTPUTS = {
    "because_ids": ("string", (None, None, None)),  # [B, K, NAMED], "" where there is nothing to name
    "because_similarity": ("float32", (None, None, None)),  # [B, K, NAMED], -inf there
}
RECOMMEND = Signature(
    "recommend",
    inputs={"embedding": ("float32", (None, None)), "k": ("int32", ())},
    outputs={
        "item_ids": ("string", (None, None)),  # [B, K], best first
        "scores": ("float32", (None, None)),  # [B, K]
        "attention": ("float32", (None, None, None, None)),  # [B, K, H, W], each grid sums to 1
        **BECAUSE_OUTPUTS,
    },
    added_outputs=tuple(BECAUSE_OUTPUTS),
)
# Two-stage ranking for large catalogs: `candidates` items retrieved with item vectors that do not depend
# on the user (one matrix product and a top-k; offline.serving.retrieval), then scored and ranked
# exactly as RECOMMEND ranks the whole catalog. `candidates` below k count as k; at or above the catalog
# size the answer is RECOMMEND's.
RECOMMEND_CANDIDATES = Signature(
    "recommend_candidates",
    inputs={"embedding": ("float32", (None, None)), "k": ("int32", ()), "candidates": ("int32", ())},
    outputs=RECOMMEND.outputs,
    added_outputs=RECOMMEND.added_outputs,
)
# Shelves a shop shows apart (`model.ranking`): "all", today's single ranking; "buy_again", only the shopper's
# past purchases (the H newest distinct ones the state carries); "for_you", none of them; "new_for_you",
# only items nobody had bought when the model was trained. `shelf` is an index into SHELVES; `candidates`
# > 0 ranks "all" and "for_you" in two stages as RECOMMEND_CANDIDATES does, 0 exactly. A shelf shorter
# than k ends in "" ids with -inf scores.
SHELVES = ("all", "buy_again", "for_you", "new_for_you")
RECOMMEND_SHELF = Signature(
    "recommend_shelf",
    inputs={
        "embedding": ("float32", (None, None)),
        "k": ("int32", ()),
        "candidates": ("int32", ()),
        "shelf": ("int32", ()),
    },
    outputs=RECOMMEND.outputs,
    added_outputs=RECOMMEND.added_outputs,
)
SCORE = Signature(
    "score",
    inputs={"embedding": ("float32", (None, None)), "item_ids": ("string", (None, None))},
    outputs={"scores": ("float32", (None, None))},  # [B, N]; an unknown item scores -inf
)
ATTENTION = Signature(
    "attention",
    inputs={"embedding": ("float32", (None, None)), "item_ids": ("string", (None,))},
    outputs={
        "attention": ("float32", (None, None, None)),  # [B, H, W] for pairs (row b, item b)
        # The score's parts (model.explanation); all zeros for an unknown item.
        "contributions": ("float32", (None, None, None)),  # [B, H, W] alpha_l * v_l; their sum is the visual score
        "concentration": ("float32", (None,)),  # [B] 1 - entropy(attention) / log(H * W): 0 uniform
        "visual_share": ("float32", (None,)),  # [B] |visual| / (|collaborative| + |visual|) of the VECF score
    },
    added_outputs=("contributions", "concentration", "visual_share"),
)
# "Because you bought" (model.because): for each of K items, the NAMED items of the history the state carries
# that it resembles most where the shopper's map looks, most similar first; "" (similarity -inf) where the
# history holds fewer items to name, and for an item the model does not know.
BECAUSE = Signature(
    "because",
    inputs={"embedding": ("float32", (None, None)), "item_ids": ("string", (None, None))},
    outputs={"item_ids": ("string", (None, None, None)), "similarity": ("float32", (None, None, None))},
)
POPULAR = Signature(
    "popular",
    inputs={"k": ("int32", ())},
    outputs={"item_ids": ("string", (None,)), "scores": ("float32", (None,))},  # training counts
)
USERS = Signature(
    "users",
    inputs={"limit": ("int32", ())},
    outputs={"user_ids": ("string", (None,))},  # known users, most active first
)
SIGNATURES: tuple[Signature, ...] = (
    USER_EMBEDDING,
    HISTORY_EMBEDDING,
    RECOMMEND,
    RECOMMEND_CANDIDATES,
    RECOMMEND_SHELF,
    SCORE,
    ATTENTION,
    BECAUSE,
    POPULAR,
    USERS,
)
# Signatures added after the first exports: an older version lacks them, and the gateway says so.
ADDED_SIGNATURES = (HISTORY_EMBEDDING.name, RECOMMEND_SHELF.name, BECAUSE.name)
DEFAULT_SIGNATURE = "serving_default"  # an alias of RECOMMEND, for TF Serving's default
