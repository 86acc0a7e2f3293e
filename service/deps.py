"""FastAPI dependencies: the objects `lifespan` created, as `Annotated` aliases for the routers.

A request takes the serving model once (`get_model`) and holds it until its response is sent, so its
backend and catalog are of one version and a reload never closes them under it.
Tests swap them through `app.dependency_overrides[get_backend]` (and `get_catalog`, `get_cache`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.backend import ModelBackend
from service.cache import EmbeddingCache
from service.catalog import Catalog
from service.errors import ModelNotLoaded
from service.metrics import Metrics
from service.reload import LoadedModel, Reloader
from service.render import Renderer
from service.settings import Settings

MODEL_VERSION_STATE = "model_version"  # request.state key the X-Model-Version header is read from


async def get_app_settings(request: Request) -> Settings:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    return request.app.state.settings


async def get_model(request: Request) -> AsyncIterator[LoadedModel]:
    model: LoadedModel | None = request.app.state.model
    if model is None:
        raise ModelNotLoaded()
    with model.in_use():
        yield model


ModelDep = Annotated[LoadedModel, Depends(get_model, scope="request")]


async def get_backend(model: ModelDep) -> ModelBackend:
    return model.backend


async def get_catalog(model: ModelDep) -> Catalog:
    return model.catalog


async def get_cache(request: Request) -> EmbeddingCache:
    return request.app.state.cache


async def get_renderer(request: Request) -> Renderer:
    return request.app.state.renderer


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_reloader(request: Request) -> Reloader:
    return request.app.state.reloader


async def _versioned_backend(request: Request, backend: Annotated[ModelBackend, Depends(get_backend)]) -> ModelBackend:
    """The backend, timed by `service.metrics`, with its version noted for the X-Model-Version header."""
    setattr(request.state, MODEL_VERSION_STATE, backend.version)
    return request.app.state.metrics.observed(backend)


async def _versioned_catalog(request: Request, catalog: Annotated[Catalog, Depends(get_catalog)]) -> Catalog:
    """The catalog, with its export's version noted (unless a backend call already did)."""
    if getattr(request.state, MODEL_VERSION_STATE, None) is None:
        setattr(request.state, MODEL_VERSION_STATE, catalog.meta.version)
    return catalog


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
BackendDep = Annotated[ModelBackend, Depends(_versioned_backend)]
CatalogDep = Annotated[Catalog, Depends(_versioned_catalog)]
CacheDep = Annotated[EmbeddingCache, Depends(get_cache)]
RendererDep = Annotated[Renderer, Depends(get_renderer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
