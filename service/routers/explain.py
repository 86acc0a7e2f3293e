from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from service import heatmap as heatmaps
from service import recommender
from service.cache import history_id
from service.deps import BackendDep, CacheDep, CatalogDep, RendererDep, SettingsDep
from service.schemas import ExplainQuery, ExplainResponse, HistoryExplainBody, error_responses

router = APIRouter(prefix="/explain", tags=["explain"])


@router.get("", response_model=ExplainResponse, responses=error_responses(404, 422, 503))
async def explain(
    query: Annotated[ExplainQuery, Query()],
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> ExplainResponse:
    """Why the user would like the item: score, attention grid, the photo regions it weighs most, how much
    of the score they carry, and whether the map is worth showing (`informative`). A new shopper: `history`
    repeated instead of `user_id` (or POST the history)."""
    return await recommender.explain(
        backend,
        cache,
        catalog,
        shopper(query),
        query.item_id,
        settings.explain_min_concentration,
        settings.explain_min_visual_share,
    )


@router.post("", response_model=ExplainResponse, responses=error_responses(404, 409, 422, 503))
async def explain_history(
    body: HistoryExplainBody,
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> ExplainResponse:
    """`GET /explain` for a shopper the model was not trained on, given by their recent item ids."""
    return await recommender.explain(
        backend,
        cache,
        catalog,
        recommender.Shopper(history=list(body.history)),
        body.item_id,
        settings.explain_min_concentration,
        settings.explain_min_visual_share,
    )


def shopper(query: ExplainQuery) -> recommender.Shopper:
    return recommender.Shopper(query.user_id, None if query.history is None else list(query.history))


def heatmap_etag(version: int, user_id: str, item_id: str) -> str:
    """The PNG is a function of the model version (the user's embedding and attention), the ids and the
    renderer, so this names it exactly. A history's `user_id` here is its cache id."""
    digest = hashlib.blake2b(f"{user_id}\0{item_id}".encode(), digest_size=8).hexdigest()
    return f'"v{version}-r{heatmaps.RENDER_REVISION}-{digest}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


@router.get(
    "/heatmap.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}},
        304: {"description": "the cached PNG is current"},
        **error_responses(404, 422, 503),
    },
)
async def heatmap(
    query: Annotated[ExplainQuery, Query()],
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    renderer: RendererDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """The product photo with the user's attention blended over it (PNG). Cacheable per user
    (`Cache-Control: private`); a browser revalidating with the ETag of the same model version gets a
    304 without a model call or a render (the demo page flips between photo and heatmap on click)."""
    who = query.user_id if query.history is None else "history:" + history_id(list(query.history))
    etag = heatmap_etag(backend.version, who, query.item_id)
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={settings.heatmap_max_age_s}"}
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    png = await recommender.heatmap_png(backend, cache, catalog, renderer, shopper(query), query.item_id)
    return Response(png, media_type="image/png", headers=headers)
