"""The FastAPI application: `create_app(settings)`; `lifespan` opens the cache and the model (and watches
MODEL_DIR for new versions); `serve(settings)` runs it under uvicorn with JSON logs.

Graceful shutdown: on SIGTERM uvicorn stops accepting connections and waits up to
`shutdown_timeout_s` (its `timeout_graceful_shutdown`) for the requests in flight; then the lifespan
closes the model backends and the cache. Keep the container's stop grace period longer than that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.cache import create_cache
from service.deps import MODEL_VERSION_STATE
from service.errors import install_error_handlers
from service.metrics import UNMATCHED_ROUTE, Metrics
from service.reload import LoadedModel, Reloader
from service.render import Renderer
from service.routers import admin, explain, health, items, metrics, page, recommend, users
from service.settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

MODEL_VERSION_HEADER = "X-Model-Version"
REQUEST_ID_HEADER = "X-Request-ID"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Cache and heatmap renderer always; the model when `settings.model_dir` is set (tests may inject one instead)."""
    settings: Settings = app.state.settings
    app.state.cache = create_cache(settings)
    app.state.renderer = Renderer(settings.render_workers)
    app.state.renderer.start()
    app.state.reloader = Reloader(settings, lambda model: _publish(app, model), app.state.metrics)
    try:
        async with app.state.reloader.running():
            yield
    finally:
        await app.state.renderer.aclose()
        await app.state.cache.aclose()


def _publish(app: FastAPI, model: LoadedModel | None) -> None:
    """The model new requests get. One synchronous step: no request sees parts of two versions."""
    app.state.model = model
    app.state.backend = None if model is None else model.backend
    app.state.catalog = None if model is None else model.catalog


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class RequestObserver:
    """Every HTTP request: a request id (the caller's X-Request-ID or a new one, echoed back), the
    X-Model-Version that answered, metrics by route template, and one access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        request_id = logs.request_id_from(_header(scope, REQUEST_ID_HEADER.lower().encode()))
        token = logs.REQUEST_ID.set(request_id)
        status, version = 500, None  # 500 unless a response starts: an exception escaped to the server

        async def send_with_headers(message: Message) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = message["status"]
                version = scope.get("state", {}).get(MODEL_VERSION_STATE)
                if version is None and getattr(state, "backend", None) is not None:
                    version = state.backend.version
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                if version is not None:
                    headers.append((MODEL_VERSION_HEADER.lower().encode(), str(version).encode()))
                message = {**message, "headers": headers}
            await send(message)

        start = time.perf_counter()
        state.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - start
            state.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            state.metrics.observe_request(scope["method"], route, status, seconds)
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "latency_ms": round(seconds * 1000, 2),
                    "model_version": version,
                },
            )
            logs.REQUEST_ID.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: the environment). Nothing is loaded until lifespan starts."""
    app = FastAPI(
        title="VECF recommender",
        summary="Explainable fashion recommendations: user-conditioned attention over product photos.",
        lifespan=lifespan,
    )
    app.state.settings = settings if settings is not None else get_settings()
    app.state.model = app.state.backend = app.state.catalog = app.state.cache = app.state.reloader = None
    app.state.renderer = None
    app.state.metrics = Metrics(app.state)
    install_error_handlers(app)
    app.add_exception_handler(admin.AdminAuthError, admin.admin_auth_error)
    app.add_middleware(RequestObserver)
    for module in (recommend, explain, items, users, health, metrics, admin, page):
        app.include_router(module.router)
    return app


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """Our access log replaces uvicorn's; uvicorn's own logs go through `service.logs`' handler."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


def serve(settings: Settings) -> None:
    """Run the gateway in the foreground until SIGINT/SIGTERM (see the module docstring)."""
    import uvicorn

    logs.configure_logging(settings.log_format, settings.log_level)
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
