from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import recommender
from service.deps import BackendDep, CacheDep, CatalogDep, SettingsDep
from service.schemas import RecommendQuery, RecommendResponse, error_responses

router = APIRouter(tags=["recommend"])


@router.get("/recommend", response_model=RecommendResponse, responses=error_responses(422, 503))
async def recommend(
    query: Annotated[RecommendQuery, Query()],
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> RecommendResponse:
    """The user's top k items, each with the attention map that explains it.

    An unknown user gets the most popular items instead (`personalized: false`, no attention).
    Large catalogs rank CANDIDATES retrieved items exactly instead of every item (two-stage)."""
    return await recommender.recommend(backend, cache, catalog, query.user_id, query.k, settings.candidates)
