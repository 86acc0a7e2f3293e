"""URLs the API hands out for an item: photo, heatmap, explanation (relative to the service root)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, quote_plus

# A /recommend answer carries three links for each of its k items. Quoting is most of their cost
# (about 0.5 ms of a k=20 answer) and the same ids come back request after request, so the quoted
# forms are memoised; bounded, because user ids come from the outside.
_CACHED = 1 << 16


@lru_cache(maxsize=_CACHED)
def _path_part(value: str) -> str:
    return quote(value, safe="")


@lru_cache(maxsize=_CACHED)
def _query_value(value: str) -> str:
    return quote_plus(value, safe="")  # what urlencode does to each value


def image_url(item_id: str) -> str:
    return f"/items/{_path_part(item_id)}/image"


def heatmap_url(user_id: str, item_id: str) -> str:
    return f"/explain/heatmap.png?user_id={_query_value(user_id)}&item_id={_query_value(item_id)}"


def explain_url(user_id: str, item_id: str) -> str:
    return f"/explain?user_id={_query_value(user_id)}&item_id={_query_value(item_id)}"


def _history_query(history: list[str]) -> str:
    return "&".join(f"history={_query_value(item)}" for item in history)


def history_heatmap_url(history: list[str], item_id: str) -> str:
    return f"/explain/heatmap.png?{_history_query(history)}&item_id={_query_value(item_id)}"


def history_explain_url(history: list[str], item_id: str) -> str:
    return f"/explain?{_history_query(history)}&item_id={_query_value(item_id)}"
