"""Concurrent /recommend calls merged into one model call.

A model call has a fixed cost (Python dispatch, thread hop, TensorFlow's per-op overhead, or an RPC)
that dwarfs a second user's rows: on the H&M model a two-stage call for 1 user took 1.44 ms of CPU,
for 4 users 3.1 ms (0.78 per user). `RowBatcher` batches opportunistically: a call that finds fewer
than `max_calls` model calls of its kind running starts one at once (no added latency when idle);
calls arriving meanwhile queue, and when a model call returns, the oldest queued call leads the next
one with every row queued by then (up to `max_rows`). Calls are of one kind when they share their non-row inputs
(signature, k, candidates), so every batch is one valid signature call.

Batching pays only where a call's fixed cost dominates. On a 200k-item catalog a two-stage call for
4 users cost 3.5-3.8 one-user calls of CPU (H&M: 1.7-2.2), and one-user calls, four at a time, beat
batches at eight connections (p99 46-48 against 55-64 ms). `calibrate` times the model in the
gateway's first load, before it serves, and picks; reloads keep the choice (`service.reload`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from service.backend import ModelBackend, Recommendation

log = logging.getLogger(__name__)

BATCH_ROWS = 16  # users per model call where batching pays
BATCH_CALLS = 2  # batched calls at once: both cores of a 2-core gateway busy, batches still large
ONE_USER_CALLS = 4  # one-user calls at once: both cores busy while the event loop does its share
# The cost of a 4-user call in 1-user calls of this process's CPU (`cost_ratio`), measured on an idle
# gateway: TF Serving over REST or gRPC 1.1-1.4 (the gateway's side of the RPC), H&M in-process
# two-stage 2.1-2.2, exact 1.7-1.8; the 200k catalog two-stage 3.5-3.8 at 1,000 candidates, 3.9 at
# 2,000. CPU, not wall-clock time: under load the CPU is what is short, and wall-clock ratios were
# closer (2.0-2.15 against 2.6-2.7) because a 4-user call spreads over both cores. Under the gateway's
# own load neither clock tells (the 200k catalog measured 1.6-2.1 beside six busy requests), hence a
# choice made before serving.
PER_USER_COST = 2.8  # at or above: batching saves too little to pay for the wait; one-user calls
# Below: a call is nearly all fixed cost, so one call at a time makes the largest batches and spends
# the least CPU per request, in the gateway and in the model server alike (measured by `make bench-serve`
# through REST and gRPC; docs and README carry the figures).
FIXED_COST = 1.5

Run = Callable[[np.ndarray, Hashable], Awaitable[Sequence[Any]]]  # rows, key -> one answer per row


@dataclass(eq=False)
class _Waiter:
    rows: np.ndarray
    done: anyio.Event = field(default_factory=anyio.Event)
    lead: bool = False  # set: this call runs the next batch itself
    answers: Sequence[Any] | None = None
    error: BaseException | None = None


class RowBatcher:
    """`await batcher(rows, key)` -> `run(rows, key)`'s answers for those rows, run in batches with
    other callers' rows of the same key. rows: [n, ...] arrays; `run` answers once per row, in order."""

    def __init__(self, run: Run, max_rows: int, max_calls: int = 2) -> None:
        if max_rows < 1 or max_calls < 1:
            raise ValueError(f"max_rows and max_calls must be >= 1, got {max_rows} and {max_calls}")
        self._run, self.max_rows, self.max_calls = run, max_rows, max_calls
        self._queues: dict[Hashable, list[_Waiter]] = {}
        self._running: dict[Hashable, int] = {}  # model calls in flight per key, at most max_calls
        self.batches = 0  # model calls made, and rows they carried (tests and metrics read them)
        self.rows = 0

    async def __call__(self, rows: np.ndarray, key: Hashable) -> Sequence[Any]:
        waiter = _Waiter(np.asarray(rows))
        queue = self._queues.setdefault(key, [])
        queue.append(waiter)
        if self._running.get(key, 0) < self.max_calls:
            self._running[key] = self._running.get(key, 0) + 1
            waiter.lead = True
        else:
            try:
                await waiter.done.wait()
            except BaseException:  # cancelled while queued: leave the queue, pass the lead on if given
                if waiter in queue:
                    queue.remove(waiter)
                if waiter.lead:
                    self._hand_over(key)
                raise
        if waiter.lead:
            await self._lead(key, waiter)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.answers is not None
        return waiter.answers

    async def _lead(self, key: Hashable, leader: _Waiter) -> None:
        """Run one model call: the leader's rows, then queued calls' in arrival order while they fit
        (calls already chosen to lead another model call keep their turn)."""
        queue = self._queues[key]
        queue.remove(leader)
        batch, total, n = [leader], len(leader.rows), 0
        while n < len(queue) and total + len(queue[n].rows) <= self.max_rows:
            if queue[n].lead:
                n += 1
                continue
            batch.append(queue.pop(n))
            total += len(batch[-1].rows)
        try:
            # Shielded: the batch carries other requests, which must get their answer even when the
            # request leading it goes away (a closed connection cancels its task).
            with anyio.CancelScope(shield=True):
                answers = await self._run(np.concatenate([w.rows for w in batch]), key)
            self.batches, self.rows = self.batches + 1, self.rows + total
            start = 0
            for w in batch:
                w.answers, start = answers[start : start + len(w.rows)], start + len(w.rows)
        except Exception as error:  # every request of the batch gets the model's error
            for w in batch:
                w.error = error
        finally:
            for w in batch:
                if w.answers is None and w.error is None:  # the call ended by a BaseException
                    w.error = RuntimeError("the batched model call was interrupted")
            for w in batch[1:]:
                w.done.set()
            self._hand_over(key)

    def _hand_over(self, key: Hashable) -> None:
        """A model call of `key` ended (or its next leader left): the oldest queued call leads the next."""
        waiting = [w for w in self._queues.get(key, ()) if not w.lead]
        if waiting:
            waiting[0].lead = True
            waiting[0].done.set()
            return
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]
            self._queues.pop(key, None)


def batch_calls_for(rows: int) -> int:
    """BATCH_CALLS's default for batches of `rows` users (BATCH_ROWS set)."""
    return ONE_USER_CALLS if rows == 1 else BATCH_CALLS


def batching_for(ratio: float) -> tuple[int, int]:
    """(BATCH_ROWS, BATCH_CALLS) for a model whose 4-user call costs `ratio` 1-user calls (`cost_ratio`)."""
    if ratio >= PER_USER_COST:
        return 1, ONE_USER_CALLS
    return BATCH_ROWS, 1 if ratio < FIXED_COST else BATCH_CALLS


async def cost_ratio(backend: ModelBackend, candidates: int, k: int = 20, repeats: int = 9) -> float:
    """A 4-user /recommend model call's cost in 1-user calls: medians of interleaved calls, in this
    process's CPU time, which other processes on the machine leave alone; call it before the gateway
    serves. `candidates`: the gateway's setting (0: exact ranking)."""
    users = await backend.users(4) or ["calibration"]  # an unknown user gets a vector all the same
    embeddings, _known = await backend.user_embeddings(users)
    four = np.resize(embeddings, (4, embeddings.shape[1])).astype(np.float32)

    async def call(rows: np.ndarray) -> float:
        start = time.process_time()
        if candidates:
            await backend.recommend_candidates(rows, k, candidates)
        else:
            await backend.recommend(rows, k)
        return time.process_time() - start

    one_user, four_users = [], []
    for repeat in range(repeats + 2):  # the first two warm both shapes up
        t1, t4 = await call(four[:1]), await call(four)
        if repeat >= 2:
            one_user.append(t1)
            four_users.append(t4)
    return statistics.median(four_users) / max(statistics.median(one_user), 1e-9)


class BatchingBackend:
    """A `ModelBackend` whose `recommend`, `recommend_candidates` and `recommend_shelf` calls are batched across
    concurrent requests (`RowBatcher`); every other call goes straight to the wrapped backend."""

    def __init__(self, backend: ModelBackend, max_rows: int, max_calls: int = 2) -> None:
        self.backend = backend
        self.version, self.grid = backend.version, backend.grid
        self.batcher = RowBatcher(self._run, max_rows, max_calls)
        self.cost_ratio: float | None = None  # set by `calibrate`

    @property
    def batching(self) -> tuple[int, int]:
        """(users per model call at most, model calls of one kind at once)."""
        return self.batcher.max_rows, self.batcher.max_calls

    def adopt(self, other: BatchingBackend) -> None:
        """Batch as `other` does (a reload keeps what the first load timed)."""
        self.batcher.max_rows, self.batcher.max_calls = other.batching
        self.cost_ratio = other.cost_ratio

    async def calibrate(self, candidates: int, calls: int | None = None) -> None:
        """Time the model (`cost_ratio`) and batch as `batching_for` says; `calls`: BATCH_CALLS if set."""
        self.cost_ratio = await cost_ratio(self.backend, candidates)
        rows, chosen_calls = batching_for(self.cost_ratio)
        self.batcher.max_rows, self.batcher.max_calls = rows, calls or chosen_calls
        log.info(
            "model version %d: a call for 4 users costs %.2f one-user calls of CPU: BATCH_ROWS=%d BATCH_CALLS=%d",
            self.version,
            self.cost_ratio,
            rows,
            self.batcher.max_calls,
        )

    async def _run(self, rows: np.ndarray, key: Hashable) -> list[Recommendation]:
        name, *args = key  # type: ignore[misc]
        return await getattr(self.backend, name)(rows, *args)  # one Recommendation per row

    async def _batched(self, embeddings: np.ndarray, key: tuple) -> list[Recommendation]:
        return list(await self.batcher(np.asarray(embeddings, np.float32), key))

    async def recommend(self, embeddings: np.ndarray, k: int) -> list[Recommendation]:
        return await self._batched(embeddings, ("recommend", int(k)))

    async def recommend_candidates(self, embeddings: np.ndarray, k: int, candidates: int) -> list[Recommendation]:
        return await self._batched(embeddings, ("recommend_candidates", int(k), int(candidates)))

    async def recommend_shelf(
        self, embeddings: np.ndarray, k: int, candidates: int, shelf: str
    ) -> list[Recommendation]:
        return await self._batched(embeddings, ("recommend_shelf", int(k), int(candidates), shelf))

    def __getattr__(self, name: str) -> Any:  # user_embeddings, score, attention, popular, users, aclose
        return getattr(self.backend, name)
