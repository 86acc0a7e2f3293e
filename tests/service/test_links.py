"""The links in API answers (service.links): ids with reserved or non-ASCII characters survive the trip."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

from service import links

IDS = ["0108775015", "a b", "x&y=z", "a/b?c#d", "100%+", "rød kjole", "ü/../..", "a" * 256]


@pytest.mark.parametrize("item_id", IDS)
@pytest.mark.parametrize("user_id", ["u1", "name@example.com", "a+b c&d"])
def test_query_links_decode_to_the_ids_and_match_urlencode(user_id: str, item_id: str) -> None:
    for url, path in (
        (links.heatmap_url(user_id, item_id), "/explain/heatmap.png"),
        (links.explain_url(user_id, item_id), "/explain"),
    ):
        parts = urlsplit(url)
        assert parts.path == path
        assert parse_qs(parts.query, strict_parsing=True) == {"user_id": [user_id], "item_id": [item_id]}
        assert parts.query == urlencode({"user_id": user_id, "item_id": item_id})
        assert links.heatmap_url(user_id, item_id) == links.heatmap_url(user_id, item_id)  # memoised: stable


@pytest.mark.parametrize("item_id", IDS)
def test_image_link_is_one_path_segment(item_id: str) -> None:
    url = links.image_url(item_id)
    segment = url.removeprefix("/items/").removesuffix("/image")
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == item_id and url == f"/items/{quote(item_id, safe='')}/image"
