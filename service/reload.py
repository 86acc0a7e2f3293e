"""New model versions without a restart: load a version folder off the event loop, check that it
answers, then swap it in with one assignment.

`Reloader.running()` (entered by the app's lifespan) loads the newest version under MODEL_DIR, looks
for a different one every `model_poll_s` seconds, and closes every model on exit; `reload()` is also
what `POST /admin/reload` calls. Requests hold the model they started with (`LoadedModel.in_use`),
so a replaced model finishes them and is closed when the last one ends (or after `model_drain_s`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from service import heap
from service.backend import ModelBackend
from service.backends import create_backend
from service.batching import BatchingBackend
from service.catalog import Catalog, find_version_dir
from service.errors import BackendUnavailable
from service.settings import ranking_candidates

if TYPE_CHECKING:
    from service.metrics import Metrics
    from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedModel:
    """One version's backend and catalog; counts the requests that hold it."""

    backend: ModelBackend
    catalog: Catalog
    version_dir: Path | None = None
    in_flight: int = 0
    _idle: anyio.Event | None = field(default=None, repr=False)

    @property
    def version(self) -> int:
        return self.backend.version

    @contextmanager
    def in_use(self) -> Iterator[LoadedModel]:
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def close_when_idle(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the requests that hold this model, then close its backend."""
        try:
            if self.in_flight:
                self._idle = anyio.Event()
                with anyio.move_on_after(timeout_s) as waited:
                    await self._idle.wait()
                if waited.cancelled_caught:
                    log.warning("closing model version %d with %d requests still on it", self.version, self.in_flight)
        finally:
            with anyio.CancelScope(shield=True):
                await self.backend.aclose()
            log.info("closed model version %d", self.version)


TRANSIENT = (BackendUnavailable, ConnectionError, TimeoutError)  # the model server may answer later


async def load_version(
    settings: Settings, version_dir: Path, *, must_answer: bool = True, batching: BatchingBackend | None = None
) -> LoadedModel:
    """The catalog and backend of one version folder, loaded on worker threads.

    The backend is asked once before it serves (a remote server has this version loaded, in-process
    functions are warm); with `must_answer=False` a server that does not answer yet is only logged.
    With BATCH_ROWS unset, the batching of `batching` (the serving model's, on a reload) is kept; None:
    the model is timed now (`BatchingBackend.calibrate`)."""
    catalog = await anyio.to_thread.run_sync(Catalog.load, version_dir, settings.image_root)
    grid = (catalog.meta.grid_rows, catalog.meta.grid_cols)
    log.info("loading model version %s from %s", version_dir.name, version_dir)
    backend = await anyio.to_thread.run_sync(create_backend, settings, version_dir, grid)
    try:
        if backend.version != catalog.meta.version:
            raise ValueError(f"{version_dir}: serving.json says version {catalog.meta.version}; re-export it")
        try:
            await backend.users(1)
        except TRANSIENT as error:
            if must_answer:
                raise
            log.warning("model version %d does not answer yet (%r); serving it anyway", backend.version, error)
        if settings.batch_rows is None and isinstance(backend, BatchingBackend):
            if batching is not None:
                backend.adopt(batching)
            else:
                try:
                    candidates = ranking_candidates(settings, catalog.meta.candidates)
                    await backend.calibrate(candidates, settings.batch_calls)
                except TRANSIENT as error:
                    log.warning(
                        "model version %d: batching not timed (%r); BATCH_ROWS=%d BATCH_CALLS=%d",
                        backend.version,
                        error,
                        *backend.batching,
                    )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await backend.aclose()
        raise
    log.info(
        "loaded %s v%d: %d items, images under %s",
        catalog.meta.model_name,
        backend.version,
        len(catalog),
        catalog.image_root,
    )
    return LoadedModel(backend, catalog, version_dir)


class ReloadFailed(Exception):
    """No model could be (re)loaded; the one serving, if any, goes on serving."""


@dataclass(frozen=True)
class ReloadResult:
    previous_version: int | None
    model_version: int
    changed: bool


def _still_serving(version: int | None) -> str:
    return "" if version is None else f"; still serving version {version}"


def _stamp(version_dir: Path) -> int:
    """The newest modification time under a version folder: changes when anything in it is rewritten."""
    return max((p.stat().st_mtime_ns for p in version_dir.rglob("*")), default=version_dir.stat().st_mtime_ns)


class Reloader:
    """Owns the serving `LoadedModel`; `publish(model)` makes it the one new requests get."""

    def __init__(
        self, settings: Settings, publish: Callable[[LoadedModel | None], None], metrics: Metrics | None = None
    ) -> None:
        self._settings = settings
        self._publish = publish
        self._metrics = metrics
        self._lock = anyio.Lock()
        self._tasks: TaskGroup | None = None
        self._failed: tuple[Path, int] | None = None  # a version that failed to load, until its files change
        self.current: LoadedModel | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Reloader]:
        """Load the newest version (if MODEL_DIR is set), poll for new ones; on exit close every model."""
        if self._settings.model_dir is not None:
            await self.reload()  # a version that cannot load stops the start, with ReloadFailed's message
            heap.settle()  # before the first request: the model's objects are never walked again
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                if self._settings.model_dir is not None and self._settings.model_poll_s > 0:
                    tasks.start_soon(self._watch, self._settings.model_poll_s)
                try:
                    yield self
                finally:
                    tasks.cancel_scope.cancel()  # the watcher; retired models close at once
        finally:
            self._tasks = None
            current, self.current = self.current, None
            self._publish(None)
            if current is not None:
                with anyio.CancelScope(shield=True):
                    await current.backend.aclose()

    async def reload(self, *, force: bool = False) -> ReloadResult:
        """Serve the newest version under MODEL_DIR if it is not the one serving (`force`: reload it anyway)."""
        if self._settings.model_dir is None:
            raise ReloadFailed("no MODEL_DIR to load versions from: start the service with --model EXPORT_DIR")
        async with self._lock:
            previous = self.current.version if self.current is not None else None
            try:
                version_dir = await anyio.to_thread.run_sync(find_version_dir, self._settings.model_dir)
            except (OSError, ValueError) as error:
                self._count("failed")
                raise ReloadFailed(f"{error}{_still_serving(previous)}") from error
            if previous is not None and int(version_dir.name) == previous and not force:
                self._count("unchanged")
                return ReloadResult(previous, previous, changed=False)
            # A reload keeps the batching timed at the first load: timed beside the gateway's own
            # requests, the CPU cost of a model call says little (service.batching.PER_USER_COST).
            serving = self.current.backend if self.current is not None else None
            batching = serving if isinstance(serving, BatchingBackend) else None
            try:  # nothing serving yet: a model server that is still starting is better than none
                model = await load_version(
                    self._settings, version_dir, must_answer=self.current is not None, batching=batching
                )
            except Exception as error:
                self._count("failed")
                if not isinstance(error, TRANSIENT):
                    self._failed = (version_dir, await anyio.to_thread.run_sync(_stamp, version_dir))
                raise ReloadFailed(
                    f"version {version_dir.name} at {version_dir} could not be loaded "
                    f"({type(error).__name__}: {error}){_still_serving(previous)}"
                ) from error
            self._swap(model)
            self._count("loaded")
            self._failed = None
            return ReloadResult(previous, model.version, changed=True)

    def _swap(self, model: LoadedModel) -> None:
        old, self.current = self.current, model
        self._publish(model)  # one synchronous step: requests see the old model or the new one, never a mix
        log.info("serving model version %d (was %s)", model.version, None if old is None else old.version)
        if old is not None:
            assert self._tasks is not None, "a second model outside Reloader.running()"
            self._tasks.start_soon(self._retire, old)

    async def _retire(self, old: LoadedModel) -> None:
        """Close a replaced version once its requests are done, then free its heap: its reference
        cycles sit in the frozen generation until `heap.settle` (one pause per version swap)."""
        await old.close_when_idle(self._settings.model_drain_s)
        del old  # the last reference
        heap.settle()

    async def _watch(self, poll_s: float) -> None:
        while True:
            await anyio.sleep(poll_s)
            try:
                if not await self._known_broken():
                    await self.reload()
            except ReloadFailed as error:
                log.warning("model poll: %s", error)
            except Exception:  # the watcher never dies; the next poll tries again
                log.exception("model poll failed")

    async def _known_broken(self) -> bool:
        """The newest version already failed to load and none of its files changed since."""
        if self._failed is None:
            return False
        version_dir, stamp = self._failed
        try:
            newest = await anyio.to_thread.run_sync(find_version_dir, self._settings.model_dir)
            return newest == version_dir and await anyio.to_thread.run_sync(_stamp, version_dir) == stamp
        except (OSError, ValueError):  # changed under us: let reload() say what is wrong
            return False

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.reloads.labels(result).inc()
