"""The in-process LRU embedding cache, the cached-embedding encoding and the cache-then-backend lookup."""

from __future__ import annotations

import numpy as np
import pytest

from service import recommender
from service.cache import HISTORIES, CachedEmbedding, LruCache, cache_key, history_id


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(value: float, known: bool = True) -> CachedEmbedding:
    return CachedEmbedding(np.full(3, value, np.float32), known)


def test_encoding_round_trip() -> None:
    for original in (CachedEmbedding(np.array([1.5, -2.0, 3.25], np.float32), True), entry(0.0, known=False)):
        data = original.to_bytes()
        assert len(data) == 1 + 3 * 4
        decoded = CachedEmbedding.from_bytes(data)
        assert decoded.known == original.known
        assert decoded.vector.dtype == np.float32
        np.testing.assert_array_equal(decoded.vector, original.vector)
    with pytest.raises(ValueError, match="not a cached embedding"):
        CachedEmbedding.from_bytes(b"\x07abcd")
    with pytest.raises(ValueError, match="not a cached embedding"):
        CachedEmbedding.from_bytes(b"\x01abc")


def test_key_names_version_and_user() -> None:
    assert cache_key(3, "alice") == "vecf:v3:emb:alice"
    assert cache_key(3, history_id(["a"]), HISTORIES).startswith("vecf:v3:hist:")


def test_history_id_is_the_items_in_order() -> None:
    assert history_id(["a", "b"]) == history_id(["a", "b"]) != history_id(["b", "a"])
    assert history_id(["a,b"]) != history_id(["a", "b"])  # ids are not joined ambiguously
    assert len(history_id(["a"] * 200)) == 64


@pytest.mark.anyio
async def test_lru_keeps_users_and_histories_apart() -> None:
    cache = LruCache(size=10, ttl_s=60)
    await cache.put_many(1, {"a": entry(1.0)}, HISTORIES)
    assert await cache.get_many(1, ["a"]) == [None]
    assert (await cache.get_many(1, ["a"], HISTORIES))[0].vector[0] == 1.0


@pytest.mark.anyio
async def test_lru_hit_miss_and_stats() -> None:
    cache = LruCache(size=10, ttl_s=60)
    assert await cache.get_many(1, ["a"]) == [None]
    await cache.put_many(1, {"a": entry(1.0), "b": entry(2.0, known=False)})
    a, b, c = await cache.get_many(1, ["a", "b", "c"])
    assert a is not None and a.known and a.vector[0] == 1.0
    assert b is not None and not b.known
    assert c is None
    assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (2, 2, 0)


@pytest.mark.anyio
async def test_lru_ttl() -> None:
    clock = Clock()
    cache = LruCache(size=10, ttl_s=30, clock=clock)
    await cache.put_many(1, {"a": entry(1.0)})
    clock.now += 29.9
    assert (await cache.get_many(1, ["a"]))[0] is not None
    clock.now += 0.2
    assert (await cache.get_many(1, ["a"]))[0] is None
    assert len(cache) == 0  # the expired entry is dropped


@pytest.mark.anyio
async def test_lru_evicts_least_recently_used() -> None:
    cache = LruCache(size=2, ttl_s=60)
    await cache.put_many(1, {"a": entry(1.0), "b": entry(2.0)})
    await cache.get_many(1, ["a"])  # a is now more recent than b
    await cache.put_many(1, {"c": entry(3.0)})
    a, b, c = await cache.get_many(1, ["a", "b", "c"])
    assert a is not None and b is None and c is not None
    assert len(cache) == 2


@pytest.mark.anyio
async def test_lru_keys_by_model_version() -> None:
    cache = LruCache(size=10, ttl_s=60)
    await cache.put_many(1, {"a": entry(1.0)})
    assert await cache.get_many(2, ["a"]) == [None]
    await cache.put_many(2, {"a": entry(2.0)})
    (old,), (new,) = await cache.get_many(1, ["a"]), await cache.get_many(2, ["a"])
    assert old.vector[0] == 1.0 and new.vector[0] == 2.0


class CountingBackend:
    version = 4

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def user_embeddings(self, user_ids):
        self.asked.append(list(user_ids))
        known = np.array([u != "stranger" for u in user_ids])
        return np.stack([np.full(3, len(u), np.float32) for u in user_ids]), known


@pytest.mark.anyio
async def test_user_embeddings_asks_the_backend_only_for_misses() -> None:
    backend, cache = CountingBackend(), LruCache(size=10, ttl_s=60)
    first = await recommender.user_embeddings(backend, cache, ["ann", "stranger", "ann"])
    assert backend.asked == [["ann", "stranger"]]  # deduplicated
    assert [e.known for e in first] == [True, False, True]
    second = await recommender.user_embeddings(backend, cache, ["stranger", "ann", "bobby"])
    assert backend.asked == [["ann", "stranger"], ["bobby"]]  # unknown answers are cached too
    assert [e.vector[0] for e in second] == [8.0, 3.0, 5.0]
    backend.version = 5  # a new model: nothing cached applies
    await recommender.user_embeddings(backend, cache, ["ann"])
    assert backend.asked[-1] == ["ann"]


@pytest.mark.anyio
async def test_lru_flush_drops_every_version() -> None:
    cache = LruCache(size=10, ttl_s=60)
    await cache.put_many(1, {"a": entry(1.0), "b": entry(2.0)})
    await cache.put_many(2, {"a": entry(3.0)})
    assert await cache.flush() == 3
    assert len(cache) == 0 and await cache.get_many(1, ["a"]) == [None]
    assert await cache.flush() == 0
