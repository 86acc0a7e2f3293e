"""URLs the API hands out for an item: photo, heatmap, explanation (relative to the service root)."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def image_url(item_id: str) -> str:
    return f"/items/{quote(item_id, safe='')}/image"


def heatmap_url(user_id: str, item_id: str) -> str:
    return "/explain/heatmap.png?" + urlencode({"user_id": user_id, "item_id": item_id})


def explain_url(user_id: str, item_id: str) -> str:
    return "/explain?" + urlencode({"user_id": user_id, "item_id": item_id})
