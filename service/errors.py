"""One JSON error shape for every failure: ``{"error": {"code", "message", "field"?}}``.

Domain code raises the exceptions below; `install_error_handlers` turns them (and FastAPI's own
validation and routing errors) into that shape. 4xx for the caller's mistakes, 503 + Retry-After
when a dependency is down, 500 only for our own bugs.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

OUT_OF_RANGE = "out_of_range"  # pydantic error type whose message already names the field
_LOCATIONS = {"query", "path", "body", "header", "cookie"}


class BackendUnavailable(Exception):
    """A model backend cannot answer right now (server down, timeout); the request may be retried."""


class ApiError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownUser(ApiError):
    status_code = 404
    code = "unknown_user"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"unknown user_id {user_id!r}: pick one from GET /users", field="user_id")


class UnknownHistory(ApiError):
    status_code = 404
    code = "unknown_history"

    def __init__(self) -> None:
        super().__init__(
            "no item of the history is in the model's catalog: nothing to personalise from", field="history"
        )


class UnknownItem(ApiError):
    status_code = 404
    code = "unknown_item"

    def __init__(self, item_id: str, detail: str = "not in the catalog") -> None:
        super().__init__(f"unknown item_id {item_id!r}: {detail}", field="item_id")


class ReexportNeeded(ApiError):
    """A request needs a signature added after the serving model version was exported."""

    status_code = 409
    code = "reexport_needed"
    # signature -> (what it serves, the request field that asked for it)
    FEATURES = {
        "history_embedding": ("recommendations from a shopper's history", "history"),
        "recommend_shelf": ("shelves", "shelf"),
        "because": ('"because you bought"', None),
    }

    def __init__(self, version: int, signature: str) -> None:
        what, field = self.FEATURES.get(signature, (f"the {signature!r} signature", None))
        super().__init__(
            f"model version {version} was exported before {what} were served: re-export it "
            "(python -m offline export) to use them",
            field=field,
        )


class ModelNotLoaded(ApiError):
    status_code = 503
    code = "model_not_loaded"

    def __init__(self) -> None:
        super().__init__("no model loaded: start the service with --model EXPORT_DIR (or MODEL_DIR)")


class CacheUnavailable(ApiError):
    status_code = 503
    code = "cache_unavailable"


def error_response(
    status_code: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


def _retry_after(request: Request) -> dict[str, str]:
    settings = getattr(request.app.state, "settings", None)
    return {"Retry-After": str(getattr(settings, "retry_after_s", 5))}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = _retry_after(request) if exc.status_code == 503 else None
    return error_response(exc.status_code, exc.code, exc.message, exc.field, headers)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("model backend unavailable on %s: %r", request.url.path, exc)
    message = f"the model backend is unavailable ({type(exc).__name__}: {exc}); retry later"
    return error_response(503, "backend_unavailable", message, headers=_retry_after(request))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"] if part not in _LOCATIONS) or None
    field = field or (first.get("ctx") or {}).get("field")  # a check of the whole request names its own field
    field = field or ("body" if tuple(first["loc"]) == ("body",) else None)  # no JSON body at all
    if first["type"] == "missing":
        message = f"{field} is required"
    elif first["type"] == OUT_OF_RANGE:
        message = first["msg"]
    else:
        message = f"{field}: {first['msg']}"
    return error_response(422, "invalid_request", message, field)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        code, message = "not_found", f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        code, message = "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
    else:
        code, message = "http_error", str(exc.detail)
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal server error; see the service log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(BackendUnavailable, _unavailable)
    app.add_exception_handler(ConnectionError, _unavailable)
    app.add_exception_handler(TimeoutError, _unavailable)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _internal)
