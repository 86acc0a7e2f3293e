"""Heatmap PNGs rendered in worker processes (`RENDER_WORKERS`), beside the gateway's event loop.

A render is about 1.5 ms of numpy and deflate on a 200x300 photo, in many short steps that each
release and retake the GIL. On the gateway's threads, with requests in flight, those steps queue for
the GIL behind the event loop and each other: at 8 connections a render took 13 ms of wall time while
the cores sat a third idle. In a worker process it runs beside the event loop, which keeps only the
HTTP work and the model call (H&M heatmaps at 8 connections: 291 -> 461 req/s, p99 46 -> 26 ms).

Only a checked file path, the grid and the crop box cross to the worker; PNG bytes come back. A worker
that dies (killed, out of memory) breaks the pool: the renderer starts a new pool and tries the render
once more there, and answers 503 if that fails too. `workers=0` renders on the gateway's threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import anyio.to_thread
import numpy as np

from service import heatmap
from service.errors import ApiError

log = logging.getLogger(__name__)


class RenderUnavailable(ApiError):
    status_code = 503
    code = "render_unavailable"


def _ready() -> bool:
    return True


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Worker initializer: exit once the gateway is gone. A gateway killed outright (SIGKILL, or
    uvicorn re-raising SIGTERM after its graceful shutdown, which skips Python's exit handlers) never
    tells its workers to stop, and each worker holds its own task pipe open, so it would wait forever."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Renderer:
    """`await renderer.png(path, grid, box)`: the photo at `path` with `grid` blended over `box`, as PNG."""

    def __init__(self, workers: int) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.restarts = 0  # pools replaced after a worker died

    def start(self) -> None:
        """Start the worker processes (spawned, not forked: the gateway runs TensorFlow's threads, which a
        fork would copy mid-flight). Returns at once; each worker imports numpy and Pillow in the
        background, so the first requests do not wait for it."""
        if self.workers and self._pool is None:
            self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = concurrent.futures.ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        for _ in range(self.workers):
            pool.submit(_ready)  # starts every worker now rather than on the first renders
        return pool

    async def png(self, path: Path, grid: np.ndarray, box: heatmap.Box) -> bytes:
        args = (str(path), np.asarray(grid, np.float32), tuple(map(float, box)))
        if not self.workers:
            return await anyio.to_thread.run_sync(heatmap.render_file, *args)
        for attempt in (1, 2):
            pool = self._pool
            if pool is None:
                raise RenderUnavailable("the heatmap renderer is shut down")
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, heatmap.render_file, *args)
            except BrokenProcessPool:
                log.warning("a heatmap render worker died (attempt %d); starting a new pool", attempt)
                self._replace(pool)
        raise RenderUnavailable("heatmap render workers keep dying; see the gateway log")

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """A new pool for `broken`, once: concurrent renders that saw the same pool break share it."""
        if self._pool is broken:
            self._pool = self._new_pool()
            self.restarts += 1
            broken.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Stop the workers and wait for them to exit (under a second, a worker still starting up included):
        uvicorn ends the process by re-raising SIGTERM, which skips the exit handlers that would."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(lambda: pool.shutdown(wait=True, cancel_futures=True))
