from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service import recommender
from service.deps import BackendDep, CacheDep, CatalogDep, RendererDep
from service.schemas import ExplainQuery, ExplainResponse, error_responses

router = APIRouter(prefix="/explain", tags=["explain"])


@router.get("", response_model=ExplainResponse, responses=error_responses(404, 422, 503))
async def explain(
    query: Annotated[ExplainQuery, Query()], backend: BackendDep, cache: CacheDep, catalog: CatalogDep
) -> ExplainResponse:
    """Why the user would like the item: score, attention grid and the photo regions it weighs most."""
    return await recommender.explain(backend, cache, catalog, query.user_id, query.item_id)


@router.get(
    "/heatmap.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404, 422, 503)},
)
async def heatmap(
    query: Annotated[ExplainQuery, Query()], backend: BackendDep, cache: CacheDep, catalog: CatalogDep,
    renderer: RendererDep,
) -> Response:
    """The product photo with the user's attention blended over it (PNG)."""
    png = await recommender.heatmap_png(backend, cache, catalog, renderer, query.user_id, query.item_id)
    return Response(png, media_type="image/png")
