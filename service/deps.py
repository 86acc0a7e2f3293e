"""FastAPI dependencies: the objects `lifespan` created, as `Annotated` aliases for the routers.

Tests swap them through `app.dependency_overrides[get_backend]` (and `get_catalog`, `get_cache`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.backend import ModelBackend
from service.cache import EmbeddingCache
from service.catalog import Catalog
from service.errors import ModelNotLoaded
from service.settings import Settings

MODEL_VERSION_STATE = "model_version"  # request.state key the X-Model-Version header is read from


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_backend(request: Request) -> ModelBackend:
    backend = request.app.state.backend
    if backend is None:
        raise ModelNotLoaded()
    return backend


def get_catalog(request: Request) -> Catalog:
    catalog = request.app.state.catalog
    if catalog is None:
        raise ModelNotLoaded()
    return catalog


def get_cache(request: Request) -> EmbeddingCache:
    return request.app.state.cache


def _versioned_backend(
    request: Request, backend: Annotated[ModelBackend, Depends(get_backend)]
) -> ModelBackend:
    """The backend, with its version noted for the X-Model-Version response header."""
    setattr(request.state, MODEL_VERSION_STATE, backend.version)
    return backend


def _versioned_catalog(request: Request, catalog: Annotated[Catalog, Depends(get_catalog)]) -> Catalog:
    """The catalog, with its export's version noted (unless a backend call already did)."""
    if getattr(request.state, MODEL_VERSION_STATE, None) is None:
        setattr(request.state, MODEL_VERSION_STATE, catalog.meta.version)
    return catalog


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
BackendDep = Annotated[ModelBackend, Depends(_versioned_backend)]
CatalogDep = Annotated[Catalog, Depends(_versioned_catalog)]
CacheDep = Annotated[EmbeddingCache, Depends(get_cache)]
