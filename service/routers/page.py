from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """A small page: pick a user, see their recommendations with attention heatmaps."""
    return FileResponse(PAGE, media_type="text/html")
