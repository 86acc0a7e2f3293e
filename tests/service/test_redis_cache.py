"""RedisCache against a real redis-server (see conftest.py): round trips, MGET, TTLs, and outages."""

from __future__ import annotations

import time

import numpy as np
import pytest
from redis import Redis

from service.cache import HISTORIES, CachedEmbedding, RedisCache, cache_key, history_id


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def entry(value: float, known: bool = True) -> CachedEmbedding:
    return CachedEmbedding(np.arange(4, dtype=np.float32) + value, known)


def command_calls(client: Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def raw(redis_server: str):
    client = Redis.from_url(redis_server)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def cache(redis_server: str):
    cache = RedisCache(redis_server, ttl_s=60, timeout_s=0.05, cooldown_s=0)
    yield cache
    await cache.aclose()


@pytest.mark.anyio
async def test_round_trip_and_key_format(cache: RedisCache, raw: Redis) -> None:
    await cache.put_many(3, {"alice": entry(1.0), "stranger": entry(0.0, known=False)})
    assert raw.get("vecf:v3:emb:alice") == entry(1.0).to_bytes()
    alice, stranger = await cache.get_many(3, ["alice", "stranger"])
    np.testing.assert_array_equal(alice.vector, entry(1.0).vector)
    assert alice.known and not stranger.known
    assert (cache.stats.hits, cache.stats.misses, cache.stats.errors) == (2, 0, 0)


@pytest.mark.anyio
async def test_histories_have_their_own_key_space(cache: RedisCache, raw: Redis) -> None:
    # A history's cache id is a hash of its items in order; it can never collide with a user id.
    key = history_id(["0706016001", "0111565001"])
    await cache.put_many(3, {key: entry(2.0)}, HISTORIES)
    assert raw.get(f"vecf:v3:hist:{key}") == entry(2.0).to_bytes() and raw.get(f"vecf:v3:emb:{key}") is None
    assert await cache.get_many(3, [key]) == [None]
    assert float((await cache.get_many(3, [key], HISTORIES))[0].vector[0]) == 2.0


@pytest.mark.anyio
async def test_bulk_read_is_one_mget_and_writes_are_pipelined(cache: RedisCache, raw: Redis) -> None:
    raw.config_resetstat()
    await cache.put_many(3, {f"u{i}": entry(float(i)) for i in range(5)})
    assert command_calls(raw, "set") == 5
    found = await cache.get_many(3, ["u0", "nobody", "u4", "u2"])
    assert [None if e is None else float(e.vector[0]) for e in found] == [0.0, None, 4.0, 2.0]
    assert command_calls(raw, "mget") == 1 and command_calls(raw, "get") == 0


@pytest.mark.anyio
async def test_a_new_model_version_misses(cache: RedisCache) -> None:
    await cache.put_many(3, {"alice": entry(1.0)})
    assert await cache.get_many(4, ["alice"]) == [None]
    assert (await cache.get_many(3, ["alice"]))[0] is not None


@pytest.mark.anyio
async def test_entries_expire_with_the_ttl(redis_server: str, raw: Redis) -> None:
    cache = RedisCache(redis_server, ttl_s=30, cooldown_s=0)
    try:
        await cache.put_many(3, {"alice": entry(1.0)})
        assert 29_000 < raw.pttl(cache_key(3, "alice")) <= 30_000
        short = RedisCache(redis_server, ttl_s=0.05, cooldown_s=0)
        await short.put_many(3, {"bob": entry(2.0)})
        time.sleep(0.15)
        assert await short.get_many(3, ["bob"]) == [None]
        await short.aclose()
    finally:
        await cache.aclose()


async def timed(awaitable):
    start = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - start


@pytest.mark.anyio
async def test_outage_becomes_misses_then_recovers_by_itself(redis_process) -> None:
    cache = RedisCache(redis_process.url, ttl_s=60, timeout_s=0.05, cooldown_s=0)
    try:
        await cache.put_many(1, {"alice": entry(1.0)})
        assert (await cache.get_many(1, ["alice"]))[0] is not None

        redis_process.stop()
        found, seconds = await timed(cache.get_many(1, ["alice", "bob"]))
        assert found == [None, None] and seconds < 0.5
        _, seconds = await timed(cache.put_many(1, {"bob": entry(2.0)}))
        assert seconds < 0.5
        assert not await cache.ping()
        assert cache.stats.errors == 2

        redis_process.start()  # same port, empty data
        await cache.put_many(1, {"alice": entry(3.0)})
        (alice,) = await cache.get_many(1, ["alice"])
        assert alice is not None and alice.vector[0] == 3.0
        assert await cache.ping()
        assert cache.stats.errors == 2
    finally:
        await cache.aclose()


@pytest.mark.anyio
async def test_hung_server_times_out_quickly(redis_process) -> None:
    cache = RedisCache(redis_process.url, ttl_s=60, timeout_s=0.05, cooldown_s=0)
    try:
        await cache.put_many(1, {"alice": entry(1.0)})
        redis_process.pause()
        try:
            found, seconds = await timed(cache.get_many(1, ["alice"]))
            assert found == [None] and seconds < 0.5
            _, seconds = await timed(cache.put_many(1, {"bob": entry(2.0)}))
            assert seconds < 0.5
            assert cache.stats.errors == 2
        finally:
            redis_process.resume()
        (alice,) = await cache.get_many(1, ["alice"])
        assert alice is not None and alice.vector[0] == 1.0
    finally:
        await cache.aclose()


@pytest.mark.anyio
async def test_cooldown_bypasses_redis_after_an_error(redis_process) -> None:
    now = [100.0]
    cache = RedisCache(redis_process.url, ttl_s=60, cooldown_s=5, clock=lambda: now[0])
    try:
        redis_process.stop()
        assert await cache.get_many(1, ["alice"]) == [None]
        assert cache.stats.errors == 1
        redis_process.start()
        await cache.put_many(1, {"alice": entry(1.0)})  # still cooling down: skipped
        assert await cache.get_many(1, ["alice"]) == [None]
        assert (cache.stats.errors, cache.stats.bypassed) == (1, 2)
        now[0] += 5
        await cache.put_many(1, {"alice": entry(1.0)})
        assert (await cache.get_many(1, ["alice"]))[0] is not None
    finally:
        await cache.aclose()
