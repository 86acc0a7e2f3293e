from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import recommender
from service.deps import BackendDep, CacheDep, CatalogDep, SettingsDep
from service.schemas import HistoryRecommendBody, RecommendQuery, RecommendResponse, error_responses
from service.settings import ranking_candidates

router = APIRouter(tags=["recommend"])


@router.get("/recommend", response_model=RecommendResponse, responses=error_responses(409, 422, 503))
async def recommend(
    query: Annotated[RecommendQuery, Query()],
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> RecommendResponse:
    """The user's top k items, each with the attention map that explains it.

    An unknown user gets the most popular items instead (`personalized: false`, no attention).
    `shelf` picks a part of the catalog: the shopper's re-buys, everything else, or the new arrivals,
    each ranked and explained by the same model. Large catalogs rank a few hundred retrieved candidates
    exactly instead of every item (two-stage: the model's own figure from its export, or CANDIDATES)."""
    candidates = ranking_candidates(settings, catalog.meta.candidates)
    shopper = recommender.Shopper(user_id=query.user_id)
    return await recommender.recommend(backend, cache, catalog, shopper, query.k, candidates, query.shelf)


@router.post("/recommend", response_model=RecommendResponse, responses=error_responses(409, 422, 503))
async def recommend_history(
    body: HistoryRecommendBody,
    backend: BackendDep,
    cache: CacheDep,
    catalog: CatalogDep,
    settings: SettingsDep,
) -> RecommendResponse:
    """The top k items for a shopper the model was not trained on, from their recent item ids: the history
    is folded into a user state (cached by a hash of it and the model version), then ranked and explained
    as a known user's. A history with no id the model knows gets the most popular items."""
    shopper = recommender.Shopper(history=list(body.history))
    candidates = ranking_candidates(settings, catalog.meta.candidates)
    return await recommender.recommend(backend, cache, catalog, shopper, body.k, candidates, body.shelf)
