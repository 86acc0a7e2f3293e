"""The gateway with a real redis-server (conftest.py) that dies, hangs and comes back while requests run:
no request fails, lookups bypass Redis quickly, and caching resumes by itself."""

from __future__ import annotations

import time

import anyio
import httpx
import numpy as np
import pytest
from redis import Redis

from service.app import create_app
from service.cache import CachedEmbedding, cache_key
from tests.service.test_api import DIM
from tests.service.test_reload import FakeBackends, FakeExport, running

USERS = ("alice", "bob", "stranger")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def steady_requests(client: httpx.AsyncClient, stop: anyio.Event, outcomes: list[tuple[int, float]]) -> None:
    """/recommend in a loop until `stop` (at most 3000 requests): (status, seconds) of each."""
    for n in range(3000):
        if stop.is_set():
            return
        start = time.perf_counter()
        response = await client.get("/recommend", params={"user_id": USERS[n % len(USERS)], "k": 2})
        outcomes.append((response.status_code, time.perf_counter() - start))
        await anyio.sleep(0.002)


def stats(app) -> dict[str, int]:
    s = app.state.cache.stats
    return {"hits": s.hits, "misses": s.misses, "errors": s.errors, "bypassed": s.bypassed}


def kill(redis_process) -> None:
    """SIGKILL: the server vanishes without closing anything, as in a crash."""
    redis_process.process.kill()
    redis_process.process.wait()
    redis_process.process = None


@pytest.mark.anyio
async def test_redis_killed_and_restarted_under_requests(
    redis_process,
    export: FakeExport,
    backends: FakeBackends,
) -> None:
    export.add(1)
    app = create_app(export.settings(redis_url=redis_process.url, redis_timeout_s=0.05, redis_cooldown_s=0.2))
    raw = Redis.from_url(redis_process.url)
    async with running(app) as client:
        stop, outcomes = anyio.Event(), []
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(steady_requests, client, stop, outcomes)
            await anyio.sleep(0.3)
            before = stats(app)
            assert before["hits"] > 0 and before["errors"] == 0
            await anyio.to_thread.run_sync(kill, redis_process)
            await anyio.sleep(0.6)
            down = stats(app)
            assert down["errors"] >= 1 and down["bypassed"] > 0
            await anyio.to_thread.run_sync(redis_process.start)  # same port, empty
            with anyio.fail_after(5):
                while not raw.exists(cache_key(1, "alice")):
                    await anyio.sleep(0.05)
            resumed = stats(app)
            await anyio.sleep(0.3)
            stop.set()
        after = stats(app)
    raw.close()
    assert [status for status, _ in outcomes if status != 200] == []
    assert len(outcomes) > 100
    assert after["hits"] > resumed["hits"]  # served from Redis again
    assert after["errors"] == resumed["errors"]  # no more errors once it answered again
    assert max(seconds for _, seconds in outcomes) < 1.0


@pytest.mark.anyio
async def test_hung_redis_under_requests_is_bypassed_quickly(
    redis_process,
    export: FakeExport,
    backends: FakeBackends,
) -> None:
    export.add(1)
    app = create_app(export.settings(redis_url=redis_process.url, redis_timeout_s=0.05, redis_cooldown_s=0.5))
    async with running(app) as client:
        stop, outcomes = anyio.Event(), []
        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(steady_requests, client, stop, outcomes)
            await anyio.sleep(0.2)
            redis_process.pause()
            try:
                await anyio.sleep(1.0)
                assert stats(app)["errors"] >= 1
            finally:
                redis_process.resume()
            hits = stats(app)["hits"]
            with anyio.fail_after(5):
                while stats(app)["hits"] == hits:
                    await anyio.sleep(0.05)
            stop.set()
    assert [status for status, _ in outcomes if status != 200] == []
    assert max(seconds for _, seconds in outcomes) < 0.5  # the whole cache deadline is 4 x 50 ms


@pytest.mark.anyio
async def test_values_are_float32_bytes_with_a_ttl_and_corrupt_ones_are_misses(
    redis_server: str,
    export: FakeExport,
    backends: FakeBackends,
) -> None:
    raw = Redis.from_url(redis_server)
    raw.flushdb()
    export.add(1)
    app = create_app(export.settings(redis_url=redis_server, cache_ttl_s=120))
    async with running(app) as client:
        assert (await client.get("/recommend", params={"user_id": "alice"})).status_code == 200
        value = raw.get(cache_key(1, "alice"))
        assert len(value) == 1 + 4 * DIM  # a flag byte and DIM little-endian float32s, no JSON
        np.testing.assert_array_equal(CachedEmbedding.from_bytes(value).vector, np.full(DIM, 1, np.float32))
        assert 119_000 < raw.pttl(cache_key(1, "alice")) <= 120_000

        raw.set(cache_key(1, "alice"), b'{"json": true}')
        await client.get("/recommend", params={"user_id": "bob"})
        response = await client.get("/recommend", params={"user_id": "alice"})
        assert response.status_code == 200 and response.json()["personalized"] is True
        assert stats(app)["errors"] == 0
        assert raw.get(cache_key(1, "alice")) == value  # rewritten
    raw.close()
