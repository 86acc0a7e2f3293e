"""The gateway's domain calls: cached user embeddings, recommendations, explanations, heatmaps."""

from __future__ import annotations

import errno
from dataclasses import dataclass

import anyio.to_thread
import numpy as np

from model import explanation
from service import heatmap, links
from service.backend import AttentionMaps, ModelBackend
from service.cache import HISTORIES, CachedEmbedding, EmbeddingCache, history_id
from service.catalog import Catalog
from service.errors import ReexportNeeded, UnknownHistory, UnknownItem, UnknownUser
from service.render import Renderer
from service.schemas import (
    AttentionMap,
    ExplainResponse,
    Grid,
    NamedItem,
    RecommendedItem,
    RecommendResponse,
    RegionOut,
    ShownItem,
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


async def history_embedding(backend: ModelBackend, cache: EmbeddingCache, history: list[str]) -> CachedEmbedding:
    """The state a shopper's history folds into: cached by a hash of the history and the model version."""
    key = history_id(history)
    (found,) = await cache.get_many(backend.version, [key], HISTORIES)
    if found is not None:
        return found
    vectors, known = await backend.history_embeddings([history])
    entry = CachedEmbedding(np.asarray(vectors[0], np.float32), bool(known[0]))
    await cache.put_many(backend.version, {key: entry}, HISTORIES)
    return entry


@dataclass(frozen=True)
class Shopper:
    """Who a request is for: a user the model was trained on, or a new shopper's history."""

    user_id: str | None = None
    history: list[str] | None = None

    async def state(self, backend: ModelBackend, cache: EmbeddingCache) -> CachedEmbedding:
        if self.history is not None:
            return await history_embedding(backend, cache, self.history)
        (entry,) = await user_embeddings(backend, cache, [self.user_id])
        return entry

    async def known_state(self, backend: ModelBackend, cache: EmbeddingCache) -> np.ndarray:
        """[1, S]; UnknownUser (or UnknownHistory) when the model cannot personalise for this shopper."""
        entry = await self.state(backend, cache)
        if not entry.known:
            raise UnknownUser(self.user_id) if self.history is None else UnknownHistory()
        return entry.vector[None, :]

    def heatmap_url(self, item_id: str) -> str:
        if self.history is None:
            return links.heatmap_url(self.user_id, item_id)
        return links.history_heatmap_url(self.history, item_id)

    def explain_url(self, item_id: str) -> str:
        if self.history is None:
            return links.explain_url(self.user_id, item_id)
        return links.history_explain_url(self.history, item_id)


def card(catalog: Catalog, item_id: str) -> dict[str, str | None]:
    """The fields of `ShownItem` (which every item of an answer extends): id, photo URL, title, category."""
    return {"item_id": item_id, "image_url": links.image_url(item_id), **catalog.text(item_id)}


def shown(catalog: Catalog, item_id: str) -> ShownItem:
    return ShownItem(**card(catalog, item_id))


def named_items(catalog: Catalog, names: np.ndarray, similarity: np.ndarray) -> list[list[NamedItem]]:
    """ "Because you bought" answers ([K, n] ids, "" none; similarities) -> each item's named items."""
    return [
        [
            NamedItem(**card(catalog, n), similarity=float(s))
            for n, s in zip(row_names, row_similarity, strict=True)
            if n
        ]
        for row_names, row_similarity in zip(names, similarity, strict=True)
    ]


async def named_from_history(
    backend: ModelBackend, catalog: Catalog, state: np.ndarray, item_ids: list[str]
) -> list[list[NamedItem] | None]:
    """For each item: the history items it resembles most where the shopper looks (`model.because`), asked
    on its own (/explain, and a ranking from a backend that does not answer it with the ranking); None
    for each from a model exported before "because you bought" was served."""
    if not item_ids:
        return []
    try:
        names, similarity = await backend.because(state, [list(item_ids)])
    except ReexportNeeded:
        return [None] * len(item_ids)
    return list(named_items(catalog, names[0], similarity[0]))


async def recommend(
    backend: ModelBackend,
    cache: EmbeddingCache,
    catalog: Catalog,
    shopper: Shopper,
    k: int,
    candidates: int = 0,
    shelf: str = "all",
) -> RecommendResponse:
    """Personalized top k of `shelf` (`model.contract.SHELVES`) with attention maps. An unknown user (or a
    history the model knows no item of) gets the most popular items ("all", "for_you"), nothing to buy
    again, and the new items by the new-item score's trend alone. `candidates` > 0: two-stage ranking (the
    top k of that many retrieved candidates); 0: exact."""
    entry = await shopper.state(backend, cache)
    vectors = entry.vector[None, :]
    if entry.known or shelf == "new_for_you":
        if shelf != "all":
            ranked = backend.recommend_shelf(vectors, k, candidates, shelf)
        elif candidates > 0:
            ranked = backend.recommend_candidates(vectors, k, candidates)
        else:
            ranked = backend.recommend(vectors, k)
        ((item_ids, scores, attention, *answered),) = await ranked
        known = entry.known
        maps: list[AttentionMap | None] = list(AttentionMap.from_arrays(attention)) if known else [None] * len(item_ids)
        # The attention map explains the image's part of a score; a re-buy must say so too.
        boosts = catalog.repeat_boosts(entry.vector)
        repeat: list[float | None] = [boosts.get(item_id, 0.0) if known else None for item_id in item_ids]
        if not known:
            named: list[list[NamedItem] | None] = [None] * len(item_ids)
        elif answered and answered[0] is not None:  # "because you bought" came with the ranking
            named = list(named_items(catalog, *answered[0]))
        else:
            named = await named_from_history(backend, catalog, vectors, list(item_ids))
    else:
        known = False
        item_ids, scores = await backend.popular(k) if shelf != "buy_again" else ([], [])
        maps, repeat, named = [None] * len(item_ids), [None] * len(item_ids), [None] * len(item_ids)
    items = [
        RecommendedItem(
            **card(catalog, item_id),
            rank=rank,
            score=float(score),
            heatmap_url=shopper.heatmap_url(item_id) if known else None,
            explain_url=shopper.explain_url(item_id) if known else None,
            attention=attention_map,
            repeat_boost=boost,
            new_item=catalog.is_new(item_id),
            source=catalog.source(item_id, known, boost or 0.0, shelf),
            because=because,
        )
        for rank, (item_id, score, attention_map, boost, because) in enumerate(
            zip(item_ids, scores, maps, repeat, named, strict=True), start=1
        )
    ]
    rows, cols = backend.grid
    return RecommendResponse(
        user_id=shopper.user_id,
        history_known=None if shopper.history is None else sum(i in catalog for i in shopper.history),
        personalized=entry.known,
        shelf=shelf,
        model_version=backend.version,
        grid=Grid(rows=rows, cols=cols),
        history=[shown(catalog, i) for i in catalog.history(entry.vector)] if entry.known else [],
        items=items,
    )


async def _attention(
    backend: ModelBackend, cache: EmbeddingCache, catalog: Catalog, shopper: Shopper, item_id: str
) -> tuple[np.ndarray, AttentionMaps]:
    """The shopper's state [1, S] and the attention signature's answer for the pair (B = 1)."""
    catalog.get(item_id)  # unknown item: 404 before any model call
    embedding = await shopper.known_state(backend, cache)
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
    shopper: Shopper,
    item_id: str,
    min_concentration: float = explanation.MIN_CONCENTRATION,
    min_visual_share: float = explanation.MIN_VISUAL_SHARE,
) -> ExplainResponse:
    """Score, map and what the map explains; `min_*`: below either, the map is not `informative`."""
    embedding, maps = await _attention(backend, cache, catalog, shopper, item_id)
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
    (named,) = await named_from_history(backend, catalog, embedding, [item_id])
    return ExplainResponse(
        user_id=shopper.user_id,
        item_id=item_id,
        **catalog.text(item_id),
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
        heatmap_url=shopper.heatmap_url(item_id),
        because=named,
    )


async def heatmap_png(
    backend: ModelBackend,
    cache: EmbeddingCache,
    catalog: Catalog,
    renderer: Renderer,
    shopper: Shopper,
    item_id: str,
) -> bytes:
    """PNG bytes: the item's photo with the shopper's attention blended over it."""
    _, maps = await _attention(backend, cache, catalog, shopper, item_id)
    grid = np.asarray(maps.grids[0], dtype=np.float32)
    path = catalog.image_path(item_id)  # checked inside the image root before a worker sees it
    try:
        return await renderer.png(path, grid, catalog.get(item_id).box)
    except OSError as error:
        if error.errno not in (None, errno.ENOENT):  # the system's trouble (no file handles, ...), not the photo's
            raise
        # removed since the check, or not an image Pillow can read (its errors carry no errno)
        raise UnknownItem(item_id, f"its image cannot be read ({type(error).__name__})") from error
