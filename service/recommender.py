"""The gateway's domain calls: cached user embeddings, recommendations, explanations, heatmaps."""

from __future__ import annotations

import errno
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from model import explanation
from service import heatmap, links
from service.backend import AttentionMaps, ModelBackend
from service.cache import CachedEmbedding, EmbeddingCache
from service.catalog import Catalog
from service.errors import UnknownItem, UnknownUser
from service.render import Renderer
from service.schemas import (
    AttentionMap,
    ExplainResponse,
    Grid,
    RecommendedItem,
    RecommendResponse,
    RegionOut,
)

TOP_REGIONS = 3


async def user_embeddings(backend: ModelBackend, cache: EmbeddingCache, user_ids: list[str]) -> list[CachedEmbedding]:
    """One entry per user id: from the cache, else from the backend (then cached, unknown users too)."""
    found = await cache.get_many(backend.version, user_ids)
    missing = list(dict.fromkeys(u for u, entry in zip(user_ids, found) if entry is None))
    fresh: dict[str, CachedEmbedding] = {}
    if missing:
        vectors, known = await backend.user_embeddings(missing)  # [M, D], [M]
        fresh = {u: CachedEmbedding(np.asarray(vectors[i], np.float32), bool(known[i])) for i, u in enumerate(missing)}
        await cache.put_many(backend.version, fresh)
    return [entry if entry is not None else fresh[u] for u, entry in zip(user_ids, found)]


async def known_user_embedding(backend: ModelBackend, cache: EmbeddingCache, user_id: str) -> np.ndarray:
    """The user state, float32 [1, D + 2H] (`model.contract`); UnknownUser when the model does not know the user."""
    (entry,) = await user_embeddings(backend, cache, [user_id])
    if not entry.known:
        raise UnknownUser(user_id)
    return entry.vector[None, :]


async def recommend(
    backend: ModelBackend, cache: EmbeddingCache, catalog: Catalog, user_id: str, k: int, candidates: int = 0
) -> RecommendResponse:
    """Personalized top k with attention maps; the most popular items for an unknown user.

    `candidates` > 0: two-stage ranking (the top k of that many retrieved candidates); 0: exact."""
    (entry,) = await user_embeddings(backend, cache, [user_id])
    if entry.known:
        vectors = entry.vector[None, :]
        ((item_ids, scores, attention),) = await (
            backend.recommend_candidates(vectors, k, candidates) if candidates > 0 else backend.recommend(vectors, k)
        )
        maps: list[AttentionMap | None] = list(AttentionMap.from_arrays(attention))
        # The attention map explains the image's part of a score; a re-buy must say so too.
        boosts = catalog.repeat_boosts(entry.vector)
        repeat: list[float | None] = [boosts.get(item_id, 0.0) for item_id in item_ids]
    else:
        item_ids, scores = await backend.popular(k)
        maps, repeat = [None] * len(item_ids), [None] * len(item_ids)
    items = [
        RecommendedItem(
            item_id=item_id,
            rank=rank,
            score=float(score),
            image_url=links.image_url(item_id),
            heatmap_url=links.heatmap_url(user_id, item_id) if entry.known else None,
            explain_url=links.explain_url(user_id, item_id) if entry.known else None,
            attention=attention_map,
            repeat_boost=boost,
            new_item=catalog.is_new(item_id),
            source=catalog.source(item_id, entry.known, boost or 0.0),
        )
        for rank, (item_id, score, attention_map, boost) in enumerate(zip(item_ids, scores, maps, repeat), start=1)
    ]
    rows, cols = backend.grid
    return RecommendResponse(
        user_id=user_id,
        personalized=entry.known,
        model_version=backend.version,
        grid=Grid(rows=rows, cols=cols),
        items=items,
    )


async def _attention(
    backend: ModelBackend, cache: EmbeddingCache, catalog: Catalog, user_id: str, item_id: str
) -> tuple[np.ndarray, AttentionMaps]:
    """The user's state [1, D + 2H] and the attention signature's answer for the pair (B = 1)."""
    catalog.get(item_id)  # unknown item: 404 before any model call
    embedding = await known_user_embedding(backend, cache, user_id)
    return embedding, await backend.attention(embedding, [item_id])


@dataclass(frozen=True)
class ScoreParts:
    """What one pair's map explains (`model.explanation`); None where the export predates the score's parts."""

    concentration: float
    visual_score: float | None
    visual_share: float | None
    contributions: np.ndarray | None  # [H, W]
    shares: np.ndarray | None  # [H, W], of the visual score


def score_parts(maps: AttentionMaps) -> ScoreParts:
    """The parts of the first pair's score. An older export's concentration is computed here from its map,
    with the formula the export uses (numpy instead of keras.ops)."""
    if maps.concentration is not None:
        concentration = float(maps.concentration[0])
    else:
        concentration = float(explanation.concentration(np.asarray(maps.grids[0], np.float64).ravel(), np))
    share = None if maps.visual_share is None else float(maps.visual_share[0])
    if maps.contributions is None:
        return ScoreParts(concentration, None, share, None, None)
    contributions = np.asarray(maps.contributions[0], np.float64)  # [H, W]
    shares = explanation.region_shares(contributions.ravel(), np).reshape(contributions.shape)
    return ScoreParts(concentration, float(contributions.sum()), share, contributions, shares)


def _region(region: heatmap.Region, parts: ScoreParts) -> RegionOut:
    at = (region.row, region.col)
    return RegionOut(
        row=region.row,
        col=region.col,
        weight=region.weight,
        box=region.box,
        contribution=None if parts.contributions is None else float(parts.contributions[at]),
        share=None if parts.shares is None else float(parts.shares[at]),
    )


async def explain(
    backend: ModelBackend,
    cache: EmbeddingCache,
    catalog: Catalog,
    user_id: str,
    item_id: str,
    min_concentration: float = explanation.MIN_CONCENTRATION,
    min_visual_share: float = explanation.MIN_VISUAL_SHARE,
) -> ExplainResponse:
    """Score, map and what the map explains; `min_*`: below either, the map is not `informative`."""
    embedding, maps = await _attention(backend, cache, catalog, user_id, item_id)
    ((score,),) = await backend.score(embedding, [[item_id]])
    if not np.isfinite(score):
        raise UnknownItem(item_id, f"model version {backend.version} does not know it")
    item = catalog.get(item_id)
    size = await anyio.to_thread.run_sync(catalog.image_size, item_id)
    grid = np.asarray(maps.grids[0], dtype=np.float32)
    parts = score_parts(maps)
    boost = catalog.repeat_boosts(embedding[0]).get(item_id, 0.0)
    reason = explanation.uninformative_reason(
        parts.concentration, parts.visual_share, min_concentration, min_visual_share
    )
    return ExplainResponse(
        user_id=user_id,
        item_id=item_id,
        model_version=backend.version,
        score=float(score),
        repeat_boost=boost,
        new_item=item.new,
        source=catalog.source(item_id, True, boost),
        attention=AttentionMap.from_array(grid),
        top_regions=[_region(r, parts) for r in heatmap.top_regions(grid, size, item.box, TOP_REGIONS)],
        concentration=parts.concentration,
        visual_score=parts.visual_score,
        visual_share=parts.visual_share,
        informative=reason is None,
        reason=reason,
        image_url=links.image_url(item_id),
        heatmap_url=links.heatmap_url(user_id, item_id),
    )


async def heatmap_png(
    backend: ModelBackend, cache: EmbeddingCache, catalog: Catalog, renderer: Renderer, user_id: str, item_id: str
) -> bytes:
    """PNG bytes: the item's photo with the user's attention blended over it."""
    _, maps = await _attention(backend, cache, catalog, user_id, item_id)
    grid = np.asarray(maps.grids[0], dtype=np.float32)
    path = catalog.image_path(item_id)  # checked inside the image root before a worker sees it
    try:
        return await renderer.png(path, grid, catalog.get(item_id).box)
    except OSError as error:
        if error.errno not in (None, errno.ENOENT):  # the system's trouble (no file handles, ...), not the photo's
            raise
        # removed since the check, or not an image Pillow can read (its errors carry no errno)
        raise UnknownItem(item_id, f"its image cannot be read ({type(error).__name__})") from error
