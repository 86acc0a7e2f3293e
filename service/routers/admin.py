"""Operator endpoints, behind `Authorization: Bearer <ADMIN_TOKEN>`; without ADMIN_TOKEN they are off (404)."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from service.deps import CacheDep, ReloaderDep, SettingsDep
from service.errors import ApiError, CacheUnavailable, error_response
from service.reload import ReloadFailed
from service.schemas import error_responses

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False, description="the ADMIN_TOKEN setting")


class AdminAuthError(ApiError):
    """401 (no token: sent with `WWW-Authenticate: Bearer`), 403 (wrong token) or 404 (admin is off)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.code = status_code, code


class ReloadConflict(ApiError):
    status_code = 409
    code = "reload_failed"


async def admin_auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdminAuthError)
    headers = {"WWW-Authenticate": 'Bearer realm="admin"'} if exc.status_code == 401 else None
    return error_response(exc.status_code, exc.code, exc.message, headers=headers)


async def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    if settings.admin_token is None:
        raise AdminAuthError(404, "admin_disabled", "admin endpoints are off: set ADMIN_TOKEN (16+ characters)")
    if credentials is None:
        raise AdminAuthError(401, "unauthorized", "send the admin token as 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not secrets.compare_digest(credentials.credentials.encode(), settings.admin_token.encode()):
        raise AdminAuthError(403, "forbidden", "wrong admin token")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
AUTH_ERRORS = (401, 403, 404)


class ReloadResponse(BaseModel):
    model_version: int = Field(description="the version serving new requests now")
    previous_version: int | None
    changed: bool = Field(description="false: the newest version was already serving")


class FlushResponse(BaseModel):
    cache: str = Field(description="lru or redis")
    flushed: int = Field(description="cached user embeddings dropped, all model versions")


@router.post("/reload", response_model=ReloadResponse, responses=error_responses(*AUTH_ERRORS, 409))
async def reload(reloader: ReloaderDep, force: bool = False) -> ReloadResponse:
    """Serve the newest version under MODEL_DIR now (the poller would, within MODEL_POLL_S).

    Requests already running finish on the old version. `force`: reload even the version serving."""
    try:
        result = await reloader.reload(force=force)
    except ReloadFailed as error:
        raise ReloadConflict(str(error)) from error
    return ReloadResponse(
        model_version=result.model_version, previous_version=result.previous_version, changed=result.changed
    )


@router.post("/cache/flush", response_model=FlushResponse, responses=error_responses(*AUTH_ERRORS, 503))
async def flush_cache(cache: CacheDep) -> FlushResponse:
    """Drop every cached user embedding (new model versions never need this: keys name the version)."""
    try:
        flushed = await cache.flush()
    except (RedisError, OSError) as error:
        message = f"the {cache.kind} cache could not be flushed ({type(error).__name__}: {error})"
        raise CacheUnavailable(message) from error
    log.info("flushed %d cached embeddings from the %s cache", flushed, cache.kind)
    return FlushResponse(cache=cache.kind, flushed=flushed)
