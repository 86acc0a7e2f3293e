from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.deps import BackendDep
from service.schemas import UsersQuery, UsersResponse, error_responses

router = APIRouter(tags=["users"])


@router.get("/users", response_model=UsersResponse, responses=error_responses(422, 503))
async def users(query: Annotated[UsersQuery, Query()], backend: BackendDep) -> UsersResponse:
    """Known user ids, most active first."""
    return UsersResponse(model_version=backend.version, users=await backend.users(query.limit))
