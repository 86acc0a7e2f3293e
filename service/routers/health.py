from __future__ import annotations

from fastapi import APIRouter

from service.cache import stats_dict
from service.deps import BackendDep, CacheDep, SettingsDep
from service.errors import CacheUnavailable
from service.schemas import CacheState, CacheStatsOut, HealthResponse, ReadyResponse, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz(cache: CacheDep) -> HealthResponse:
    """The process is alive; also the embedding cache's hit/miss/error counters."""
    return HealthResponse(cache=CacheStatsOut(**stats_dict(cache)) if cache is not None else None)


@router.get("/noop", include_in_schema=False)
async def noop() -> dict:
    """Does nothing: the server's own cost per request (routing, middleware, JSON), for load tests."""
    return {}


@router.get("/readyz", response_model=ReadyResponse, responses=error_responses(503))
async def readyz(backend: BackendDep, cache: CacheDep, settings: SettingsDep) -> ReadyResponse:
    """The model is loaded and answers (for TF Serving backends: the server serves this version; a
    503 with Retry-After otherwise). A down Redis is reported, and fails readiness only if
    REDIS_REQUIRED."""
    await backend.users(1)  # the cheapest signature; raises BackendUnavailable when it cannot answer
    ok = await cache.ping()
    if not ok and settings.redis_required:
        raise CacheUnavailable(f"the {cache.kind} cache does not answer and REDIS_REQUIRED is set")
    return ReadyResponse(model_version=backend.version, cache=CacheState(kind=cache.kind, ok=ok))
