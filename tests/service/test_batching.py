"""service.batching: concurrent /recommend calls share model calls, each caller gets its own rows."""

from __future__ import annotations

import time
from collections.abc import Hashable
from pathlib import Path

import anyio
import numpy as np
import pytest

from service.backend import InProcessBackend
from service.batching import BATCH_ROWS, BatchingBackend, RowBatcher, batching_for, cost_ratio
from tests.service.test_metrics_endpoint import sample

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SlowModel:
    """A model call that takes `seconds` and answers rows * 10 + key; records every batch it ran."""

    def __init__(self, seconds: float = 0.02, fail_on: int | None = None) -> None:
        self.seconds, self.fail_on = seconds, fail_on
        self.batches: list[tuple[list[float], Hashable]] = []

    async def __call__(self, rows: np.ndarray, key: Hashable) -> list[tuple[np.ndarray, str]]:
        self.batches.append((rows[:, 0].tolist(), key))
        await anyio.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in rows[:, 0]:
            raise RuntimeError(f"row {self.fail_on} broke the model")
        return [(row * 10 + key, f"row{int(row[0])}") for row in rows]  # one answer per row


def split(answers: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, list[str]]:
    """A call's answers as (values [n, 1], names [n])."""
    return np.array([value for value, _ in answers]), [name for _, name in answers]


async def _gather(batcher: RowBatcher, calls: list[tuple[np.ndarray, int]], gap_s: float = 0.0) -> list:
    out: list = [None] * len(calls)

    async def one(n: int) -> None:
        try:
            out[n] = split(await batcher(*calls[n]))
        except Exception as error:
            out[n] = error

    async with anyio.create_task_group() as tasks:
        for n in range(len(calls)):
            tasks.start_soon(one, n)
            if gap_s:
                await anyio.sleep(gap_s)
    return out


async def test_a_lone_call_runs_at_once_as_its_own_batch() -> None:
    model = SlowModel(seconds=0)
    batcher = RowBatcher(model, max_rows=8)
    with anyio.fail_after(1):
        values, names = split(await batcher(np.array([[3.0]]), 1))
    assert values.tolist() == [[31.0]] and names == ["row3"]
    assert model.batches == [([3.0], 1)]


async def test_concurrent_calls_share_model_calls_and_get_their_own_rows() -> None:
    model = SlowModel()
    batcher = RowBatcher(model, max_rows=8)
    calls = [(np.array([[float(n)], [n + 0.5]]), 7) for n in range(10)]  # two rows each
    results = await _gather(batcher, calls)
    for n, (values, names) in enumerate(results):
        assert values.tolist() == [[n * 10 + 7.0], [n * 10 + 5 + 7.0]]
        assert names == [f"row{n}", f"row{n}"]
    # The first two calls run alone (max_calls 2, nothing queued yet); the other eight queue and go
    # in batches of at most 8 rows: 4 model calls; every row ran exactly once.
    sizes = [len(rows) for rows, _ in model.batches]
    assert sizes[0] == 2 and max(sizes) <= 8 and len(model.batches) <= 4
    assert sorted(r for rows, _ in model.batches for r in rows) == sorted(r for c, _ in calls for r in c[:, 0])
    assert batcher.batches == len(model.batches) and batcher.rows == 20


async def test_calls_of_different_keys_never_share_a_batch() -> None:
    model = SlowModel()
    batcher = RowBatcher(model, max_rows=16)
    calls = [(np.array([[float(n)]]), n % 2) for n in range(8)]
    results = await _gather(batcher, calls)
    assert [values[0, 0] for values, _ in results] == [n * 10.0 + n % 2 for n in range(8)]
    for rows, key in model.batches:
        assert {int(r) % 2 for r in rows} == {key}


async def test_a_failed_batch_fails_its_calls_only_and_the_batcher_goes_on() -> None:
    model = SlowModel(fail_on=4)
    batcher = RowBatcher(model, max_rows=3)
    results = await _gather(batcher, [(np.array([[float(n)]]), 0) for n in range(8)])
    failed = [n for n, r in enumerate(results) if isinstance(r, RuntimeError)]
    batch_of_4 = next(rows for rows, _ in model.batches if 4.0 in rows)
    assert failed == sorted(int(r) for r in batch_of_4)
    assert all(results[n][0][0, 0] == n * 10.0 for n in range(8) if n not in failed)
    values, _ = split(await batcher(np.array([[1.0]]), 0))
    assert values[0, 0] == 10.0


async def test_a_cancelled_call_neither_blocks_nor_loses_the_others() -> None:
    model = SlowModel(seconds=0.05)
    batcher = RowBatcher(model, max_rows=4, max_calls=1)
    out: dict[int, object] = {}

    async def call(n: int, scope: anyio.CancelScope | None = None) -> None:
        if scope is None:
            out[n] = split(await batcher(np.array([[float(n)]]), 0))
            return
        with scope:
            out[n] = split(await batcher(np.array([[float(n)]]), 0))

    leader, queued = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call, 0, leader)  # runs the first batch
            await anyio.sleep(0.01)
            tasks.start_soon(call, 1, queued)  # queued behind it, then cancelled
            tasks.start_soon(call, 2)
            await anyio.sleep(0.01)
            leader.cancel()  # the batch it leads still finishes (shielded)
            queued.cancel()
    # The cancelled leader's answer was computed before it could be cancelled (it may keep it);
    # the cancelled queued call got none, and the call behind it was answered.
    assert 1 not in out and out[2][0][0, 0] == 20.0
    assert [rows for rows, _ in model.batches] == [[0.0], [2.0]]


async def test_at_most_max_calls_model_calls_run_at_once_and_every_slot_comes_back() -> None:
    in_flight, peak = 0, 0

    async def model(rows: np.ndarray, key: Hashable) -> list[tuple[np.ndarray, str]]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return [(row, "") for row in rows]

    batcher = RowBatcher(model, max_rows=2, max_calls=3)
    for _ in range(2):  # a second burst: slots freed by the first are usable again
        results = await _gather(batcher, [(np.array([[float(n)]]), 0) for n in range(30)], gap_s=0.001)
        assert [r[0][0, 0] for r in results] == [float(n) for n in range(30)]
    assert peak == 3
    assert batcher._running == {} and batcher._queues == {}


def test_max_rows_and_max_calls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        RowBatcher(SlowModel(), max_rows=0)
    with pytest.raises(ValueError, match="max_calls"):
        RowBatcher(SlowModel(), max_rows=4, max_calls=0)


@pytest.fixture(scope="module")
def export_dir(tiny_work: Path) -> Path:
    return tiny_work / "export" / "1"


async def test_batched_backend_answers_like_the_backend_it_wraps(export_dir: Path) -> None:
    # The real SavedModel, eight concurrent users: the same ids, scores, grids and "because you bought" as one
    # call each.
    backend = InProcessBackend(export_dir, (7, 7))
    batched = BatchingBackend(backend, max_rows=4)
    users = await backend.users(8)
    embeddings, _ = await backend.user_embeddings(users)
    for method, args in (
        ("recommend", (6,)),
        ("recommend_candidates", (6, 30)),
        ("recommend_shelf", (6, 30, "for_you")),
    ):
        want = [(await getattr(backend, method)(embeddings[n : n + 1], *args))[0] for n in range(len(users))]
        got: list = [None] * len(users)

        async def one(n: int) -> None:
            (got[n],) = await getattr(batched, method)(embeddings[n : n + 1], *args)  # noqa: B023

        async with anyio.create_task_group() as tasks:
            for n in range(len(users)):
                tasks.start_soon(one, n)
        for (ids, scores, grids, named), (want_ids, want_scores, want_grids, want_named) in zip(got, want, strict=True):
            assert list(ids) == list(want_ids), method
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(grids, want_grids, rtol=1e-5, atol=1e-7)
            assert named[0].tolist() == want_named[0].tolist(), method
            np.testing.assert_allclose(named[1], want_named[1], rtol=1e-5, atol=1e-6)
    assert batched.batcher.batches < 2 * len(users), "no call was shared"
    assert batched.version == backend.version and await batched.users(2) == users[:2]


def spin(seconds: float) -> None:
    """Burn `seconds` of this process's CPU (what cost_ratio measures)."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class TimedModel:
    """A backend whose /recommend calls burn `fixed_s + per_user_s * users` of CPU; records each call's inputs."""

    version, grid = 1, (2, 2)

    def __init__(self, fixed_s: float, per_user_s: float) -> None:
        self.fixed_s, self.per_user_s = fixed_s, per_user_s
        self.calls: list[tuple[str, int, int, int]] = []  # method, users, k, candidates

    async def users(self, limit: int) -> list[str]:
        return ["u1", "u2"][:limit]  # fewer than the 4 users timed: rows repeat

    async def user_embeddings(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return np.ones((len(user_ids), 3), np.float32), np.ones(len(user_ids), bool)

    async def _sleep(self, method: str, embeddings: np.ndarray, k: int, candidates: int = 0) -> list:
        self.calls.append((method, len(embeddings), k, candidates))
        spin(self.fixed_s + self.per_user_s * len(embeddings))
        await anyio.sleep(0.002)  # waiting (an RPC, another thread) costs no CPU: not counted
        return [([], np.zeros(0), np.zeros((0, 2, 2)))] * len(embeddings)

    async def recommend(self, embeddings: np.ndarray, k: int) -> list:
        return await self._sleep("recommend", embeddings, k)

    async def recommend_candidates(self, embeddings: np.ndarray, k: int, candidates: int) -> list:
        return await self._sleep("recommend_candidates", embeddings, k, candidates)


@pytest.mark.parametrize(
    ("fixed_s", "per_user_s", "batching"),
    [
        (0.01, 0.001, (BATCH_ROWS, 1)),  # 1.27: nearly all fixed cost (an RPC), the largest batches
        (0.006, 0.002, (BATCH_ROWS, 2)),  # 1.75: batches, two at a time keep both cores busy
        (0.0, 0.006, (1, 4)),  # 4.0: all per user, one-user calls four at a time
    ],
)
async def test_the_timed_cost_of_a_call_chooses_the_batching(
    fixed_s: float, per_user_s: float, batching: tuple[int, int]
) -> None:
    model = TimedModel(fixed_s, per_user_s)
    ratio = await cost_ratio(model, candidates=300)  # type: ignore[arg-type]
    assert ratio == pytest.approx((fixed_s + 4 * per_user_s) / (fixed_s + per_user_s), rel=0.15)
    assert batching_for(ratio) == batching
    # It times the call the gateway makes (two-stage here), for one user and for four, alternately
    assert {(method, k, candidates) for method, _, k, candidates in model.calls} == {("recommend_candidates", 20, 300)}
    assert [users for _, users, _, _ in model.calls] == [1, 4] * (len(model.calls) // 2)

    exact = TimedModel(fixed_s, per_user_s)
    assert batching_for(await cost_ratio(exact, candidates=0)) == batching  # type: ignore[arg-type]
    assert {method for method, *_ in exact.calls} == {"recommend"}

    wrapped = BatchingBackend(model, 16)  # type: ignore[arg-type]
    await wrapped.calibrate(300)
    assert wrapped.batching == batching and wrapped.cost_ratio == pytest.approx(ratio, rel=0.15)
    await wrapped.calibrate(300, calls=3)  # BATCH_CALLS set: kept whatever the batch size
    assert wrapped.batching == (batching[0], 3)


@pytest.mark.parametrize(
    ("batch_rows", "batch_calls", "want"),
    [
        (None, None, None),  # timed: whatever the tiny model's cost says, and the gauges say it
        (1, None, (1, 4)),
        (1, 3, (1, 3)),
        (8, None, (8, 2)),
    ],
)
def test_gateway_batching_settings_and_their_gauges(
    export_dir: Path, batch_rows: int | None, batch_calls: int | None, want: tuple[int, int] | None
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        model_dir=export_dir.parent,
        redis_url=None,
        candidates=30,
        model_poll_s=0,
        batch_rows=batch_rows,
        batch_calls=batch_calls,
    )
    with TestClient(create_app(settings)) as client:
        metrics = client.get("/metrics").text
    ratio = sample(metrics, "vecf_backend_batch_cost_ratio")  # only where the gateway timed the model
    if want is None:
        assert ratio is not None and ratio > 0
        want = batching_for(ratio)
    else:
        assert ratio is None
    assert sample(metrics, "vecf_backend_batch_rows") == want[0]
    assert sample(metrics, "vecf_backend_batch_calls") == want[1]


@pytest.mark.parametrize("batch_rows", [0, 16])
def test_gateway_batch_rows_setting_and_its_metrics(export_dir: Path, batch_rows: int) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(
        model_dir=export_dir.parent, redis_url=None, candidates=30, model_poll_s=0, batch_rows=batch_rows
    )
    with TestClient(create_app(settings)) as client:
        users = client.get("/users", params={"limit": 3}).json()["users"]
        for user in users:
            assert client.get("/recommend", params={"user_id": user, "k": 4}).status_code == 200
        metrics = client.get("/metrics").text
    if batch_rows == 0:
        assert "vecf_backend_batches" not in metrics and "vecf_backend_batch_rows" not in metrics
    else:  # TestClient sends one request at a time: one model call per request, one user each
        assert "vecf_backend_batches_total 3.0" in metrics
        assert "vecf_backend_batched_rows_total 3.0" in metrics
