from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from service.deps import CatalogDep
from service.schemas import ItemId, error_responses

router = APIRouter(prefix="/items", tags=["items"])


@router.get(
    "/{item_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, **error_responses(404)},
)
async def item_image(item_id: Annotated[ItemId, Path()], catalog: CatalogDep) -> FileResponse:
    """The product photo. The id is checked against the catalog before any file is touched."""
    return FileResponse(catalog.image_path(item_id))
