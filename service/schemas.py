"""Request (query) and response schemas of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from model.contract import PLACE_SOURCES, SHELVES
from service.errors import OUT_OF_RANGE

# ---- requests ----------------------------------------------------------------------------------


def IntBetween(lo: int, hi: int) -> Any:
    """An int type that rejects values outside lo..hi with a message naming the field and the range."""

    def check(value: int, info: ValidationInfo) -> int:
        if not lo <= value <= hi:
            raise PydanticCustomError(
                OUT_OF_RANGE,
                "{field} must be between {lo} and {hi}, got {value}",
                {"field": info.field_name, "lo": lo, "hi": hi, "value": value},
            )
        return value

    return Annotated[int, Field(json_schema_extra={"minimum": lo, "maximum": hi}), AfterValidator(check)]


UserId = Annotated[str, Field(min_length=1, max_length=256, description="a user id, e.g. from GET /users")]
ItemId = Annotated[str, Field(min_length=1, max_length=256, description="an item id of the catalog")]
TopK = IntBetween(1, 100)
UsersLimit = IntBetween(1, 1000)


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


ShelfName = Literal[SHELVES]  # type: ignore[valid-type]
SHELF_DOC = (
    "which part of the catalog: `all` (one ranking, the default), `buy_again` (only the shopper's past "
    "purchases), `for_you` (none of them), `new_for_you` (only items nobody had bought when the model was "
    "trained); a shelf may hold fewer than k items"
)


class RecommendQuery(_Query):
    user_id: UserId
    k: TopK = Field(10, description="how many items, 1..100")
    shelf: ShelfName = Field("all", description=SHELF_DOC)


MAX_HISTORY = 200
History = Annotated[
    list[ItemId],
    Field(
        min_length=1,
        max_length=MAX_HISTORY,
        description="a shopper's item ids, oldest first (ids the model does not know are ignored), for a shopper "
        "the model was not trained on",
    ),
]


class ExplainQuery(_Query):
    """A known user's `user_id`, or a new shopper's `history` (the query parameter repeated, oldest first)."""

    user_id: UserId | None = None
    history: History | None = None
    item_id: ItemId

    @model_validator(mode="after")
    def _one_shopper(self) -> ExplainQuery:
        if (self.user_id is None) == (self.history is None):
            raise PydanticCustomError("shopper", "give exactly one of user_id and history", {"field": "user_id"})
        return self


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistoryRecommendBody(_Body):
    history: History
    k: TopK = Field(10, description="how many items, 1..100")
    shelf: ShelfName = Field("all", description=SHELF_DOC)


class HistoryExplainBody(_Body):
    history: History
    item_id: ItemId


class UsersQuery(_Query):
    limit: UsersLimit = Field(20, description="how many user ids, 1..1000")


# ---- responses ---------------------------------------------------------------------------------


class Grid(BaseModel):
    rows: int
    cols: int


class AttentionMap(Grid):
    weights: list[list[float]] = Field(description="rows x cols, sums to 1; row 0 is the top of the crop")

    @classmethod
    def from_array(cls, grid: np.ndarray) -> AttentionMap:
        return cls.from_arrays(np.asarray(grid)[None])[0]

    @classmethod
    def from_arrays(cls, grids: np.ndarray) -> list[AttentionMap]:
        """One map per grid of grids [K, H, W]. Rounded and listed in one numpy call, and built without
        re-validation: the values are floats we computed, and on /recommend's hot path validating
        K x H x W of them again cost more than the rest of the response."""
        grids = np.asarray(grids, dtype=np.float64)
        if grids.size == 0:
            return []
        if grids.ndim != 3:
            raise ValueError(f"grids must be [K, H, W], got shape {grids.shape}")
        rows, cols = grids.shape[1:]
        return [cls.model_construct(rows=rows, cols=cols, weights=weights) for weights in np.round(grids, 6).tolist()]


# One Literal per contract list: the values are model.contract's, checked by pydantic.
PlaceSource = Literal[PLACE_SOURCES]  # type: ignore[valid-type]
SOURCE_DOC = (
    "where the item's place comes from: `vecf` (VECF's score), `repeat_boost` (VECF's score plus the "
    "boost for a past purchase), `new_item_slot` (a place kept for new items, filled from the photo "
    "and the shopper's history by a scorer outside VECF: the heatmap then explains VECF's own score "
    "of the item, not the place), `popularity` (the shopper is unknown)"
)


class ShownItem(BaseModel):
    """An item as a page shows it: its photo, and the catalog's title and category where it has them."""

    item_id: str
    image_url: str
    title: str | None = Field(None, description="the catalog's title; null where it has none")
    category: str | None = Field(None, description="the catalog's category or product type; null where it has none")


class NamedItem(ShownItem):
    similarity: float = Field(
        description="cosine between the two items' attended-region vectors, each under this shopper's attention "
        "map: how alike they are where the shopper looks"
    )


BECAUSE_DOC = (
    "up to 3 items of the shopper's history this one resembles most where their map looks (\"because you "
    'bought"), most similar first; null when not personalized or for a model exported before they were served'
)


class RecommendedItem(ShownItem):
    rank: int = Field(description="1-based")
    score: float
    heatmap_url: str | None = Field(description="null when not personalized")
    explain_url: str | None = Field(description="null when not personalized")
    attention: AttentionMap | None = Field(description="null when not personalized")
    repeat_boost: float | None = Field(
        description="the part of `score` that is there because the user bought this item before (the "
        "repeat-purchase boost; 0 when not); null when not personalized"
    )
    new_item: bool = Field(
        description="the item had no purchase when the model was trained: its VECF score rests on its photo alone, "
        "and with new-item slots (a model's `new_item_every`) that is how it got its place"
    )
    source: PlaceSource = Field(description=SOURCE_DOC)
    because: list[NamedItem] | None = Field(None, description=BECAUSE_DOC)


class RecommendResponse(BaseModel):
    user_id: str | None = Field(description="null for a shopper given by `history`")
    history_known: int | None = Field(
        None, description="for a `history`: how many of its ids the model knows (0: most popular items instead)"
    )
    personalized: bool = Field(description="false: unknown user, most popular items instead")
    shelf: ShelfName = Field(description="the shelf asked for")
    model_version: int
    grid: Grid
    history: list[ShownItem] = Field(
        description="the shopper's recent purchases as the model holds them (its newest distinct items, newest "
        "first): what `buy_again` ranks and `because` names from; empty for an unknown shopper"
    )
    items: list[RecommendedItem]


class RegionOut(BaseModel):
    row: int
    col: int
    weight: float = Field(description="its attention weight")
    box: tuple[int, int, int, int] = Field(description="x0, y0, x1, y1 in the photo's pixels")
    contribution: float | None = Field(
        description="its part of the score: attention weight x the user's value of the region; null for a model "
        "exported before the score's parts were"
    )
    share: float | None = Field(
        description="its share of the visual score: contribution / the sum of all regions' |contribution| "
        "(negative where the region pulls the score down); null as `contribution`"
    )


UninformativeReason = Literal["near_uniform", "little_visual_score"]


class ExplainResponse(BaseModel):
    user_id: str | None = Field(description="null for a shopper given by `history`")
    item_id: str
    title: str | None = Field(None, description="the catalog's title; null where it has none")
    category: str | None = Field(None, description="the catalog's category or product type; null where it has none")
    model_version: int
    score: float
    repeat_boost: float = Field(
        description="the part of `score` that is there because the user bought this "
        "item before (the repeat-purchase boost; 0 when not)"
    )
    new_item: bool = Field(
        description="the item had no purchase when the model was trained: its VECF score rests on its photo alone, "
        "and with new-item slots (a model's `new_item_every`) that is how it got its place"
    )
    source: PlaceSource = Field(description=SOURCE_DOC)
    attention: AttentionMap
    top_regions: list[RegionOut] = Field(description="the heaviest regions of `attention`, heaviest first")
    concentration: float = Field(
        description="how concentrated `attention` is: 1 - its entropy / log(rows x cols); 0 for a uniform map, "
        "1 for all weight on one region"
    )
    visual_score: float | None = Field(
        description="the part of the score the photo carries: the sum of the regions' contributions; null for a "
        "model exported before the score's parts were"
    )
    visual_share: float | None = Field(
        description="|visual_score| / (|collaborative part| + |visual_score|) of the model's score (the repeat "
        "boost left out); null as `visual_score`"
    )
    informative: bool = Field(
        description="false: the map explains little (see `reason`), so the demo page shows the plain photo"
    )
    reason: UninformativeReason | None = Field(
        description="why not informative: near_uniform (concentration below EXPLAIN_MIN_CONCENTRATION) or "
        "little_visual_score (visual_share below EXPLAIN_MIN_VISUAL_SHARE); null when informative"
    )
    image_url: str
    heatmap_url: str
    because: list[NamedItem] | None = Field(None, description=BECAUSE_DOC)


class UsersResponse(BaseModel):
    model_version: int
    users: list[str]


class CacheStatsOut(BaseModel):
    kind: str
    hits: int
    misses: int
    errors: int
    bypassed: int


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    cache: CacheStatsOut | None


class CacheState(BaseModel):
    kind: str
    ok: bool


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: int
    cache: CacheState


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for these status codes."""
    return {code: {"model": ErrorResponse} for code in codes}
