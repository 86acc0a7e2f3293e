"""The FastAPI application: `create_app(settings)`; `lifespan` opens the model, catalog and cache."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.backend import ModelBackend, create_backend
from service.cache import create_cache
from service.catalog import Catalog, find_version_dir
from service.deps import MODEL_VERSION_STATE
from service.errors import install_error_handlers
from service.routers import explain, health, items, page, recommend, users
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

MODEL_VERSION_HEADER = "X-Model-Version"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Cache always; catalog and backend when `settings.model_dir` is set (tests may inject them)."""
    settings: Settings = app.state.settings
    app.state.cache = create_cache(settings)
    try:
        if settings.model_dir is not None:
            app.state.catalog, app.state.backend = await load_model(settings)
        yield
    finally:
        if app.state.backend is not None:
            await app.state.backend.aclose()
        await app.state.cache.aclose()
        app.state.backend = app.state.catalog = None


async def load_model(settings: Settings) -> tuple[Catalog, ModelBackend]:
    """The catalog and backend of the newest version under `settings.model_dir`."""
    assert settings.model_dir is not None
    version_dir = find_version_dir(settings.model_dir)
    catalog = Catalog.load(version_dir, settings.image_root)
    grid = (catalog.meta.grid_rows, catalog.meta.grid_cols)
    log.info("loading model version %s from %s", version_dir.name, version_dir)
    backend = await anyio.to_thread.run_sync(create_backend, settings, version_dir, grid)
    if backend.version != catalog.meta.version:
        raise ValueError(f"{version_dir}: serving.json says version {catalog.meta.version}; re-export it")
    log.info(
        "serving %s v%d: %d items, images under %s",
        catalog.meta.model_name, backend.version, len(catalog), catalog.image_root,
    )
    return catalog, backend


class ModelVersionHeader:
    """Adds `X-Model-Version` to every response: the version the request used, else the loaded one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                version = scope.get("state", {}).get(MODEL_VERSION_STATE)
                loaded = getattr(getattr(scope.get("app"), "state", None), "backend", None)
                if version is None and loaded is not None:
                    version = loaded.version
                if version is not None:
                    headers = list(message.get("headers", []))
                    headers.append((MODEL_VERSION_HEADER.lower().encode(), str(version).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_version)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: the environment). Nothing is loaded until lifespan starts."""
    app = FastAPI(
        title="VECF recommender",
        summary="Explainable fashion recommendations: user-conditioned attention over product photos.",
        lifespan=lifespan,
    )
    app.state.settings = settings if settings is not None else get_settings()
    app.state.backend = app.state.catalog = app.state.cache = None
    install_error_handlers(app)
    app.add_middleware(ModelVersionHeader)
    for module in (recommend, explain, items, users, health, page):
        app.include_router(module.router)
    return app
