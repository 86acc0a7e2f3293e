"""Prometheus metrics of one app, in its own `CollectorRegistry` (two apps in a process never share one).

HTTP requests are labelled by route template (`/items/{item_id}/image`), never by raw path, so ids
cannot blow up the number of series. Backend calls are timed by contract signature through
`ObservedBackend`. Cache counters and the serving model version are read from the app's state
when Prometheus scrapes, so they are never counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from model.contract import (
    ATTENTION,
    BECAUSE,
    HISTORY_EMBEDDING,
    POPULAR,
    RECOMMEND,
    RECOMMEND_CANDIDATES,
    RECOMMEND_SHELF,
    SCORE,
    USER_EMBEDDING,
    USERS,
)
from service.backend import AttentionMaps, ModelBackend, Recommendation

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version reads
UNMATCHED_ROUTE = "unmatched"  # label of requests no route matched (404s for arbitrary paths)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BACKEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

T = TypeVar("T")


class _StateCollector:
    """Reads the app's cache and render counters and serving model version at scrape time."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        cache = getattr(self._state, "cache", None)
        if cache is not None:
            for name, help_text in (
                ("hits", "user-embedding cache hits"),
                ("misses", "user-embedding cache misses (then asked from the backend)"),
                ("errors", "failed cache calls, each answered as all misses"),
                ("bypassed", "cache calls skipped while cooling down after an error"),
            ):
                family = CounterMetricFamily(f"vecf_cache_{name}", help_text, labels=["cache"])
                family.add_metric([cache.kind], getattr(cache.stats, name))
                yield family
        renderer = getattr(self._state, "renderer", None)  # service.render
        if renderer is not None:
            yield GaugeMetricFamily(
                "vecf_render_workers", "heatmap render worker processes (0: in threads)", renderer.workers
            )
            yield CounterMetricFamily(
                "vecf_render_worker_restarts", "render pools replaced after a worker died", renderer.restarts
            )
        backend = getattr(self._state, "backend", None)
        if backend is not None:
            yield GaugeMetricFamily("vecf_model_version", "the model version serving new requests", backend.version)
            batcher = getattr(backend, "batcher", None)  # service.batching (BATCH_ROWS not 0)
            if batcher is not None:  # per model version: a reload starts them again, as a counter reset
                yield GaugeMetricFamily(
                    "vecf_backend_batch_rows", "most users one batched model call carries", batcher.max_rows
                )
                yield GaugeMetricFamily(
                    "vecf_backend_batch_calls", "batched model calls of one kind at once", batcher.max_calls
                )
                ratio = getattr(backend, "cost_ratio", None)
                if ratio is not None:  # BATCH_ROWS unset: timed at the first load
                    yield GaugeMetricFamily(
                        "vecf_backend_batch_cost_ratio",
                        "CPU of a 4-user model call in 1-user calls, timed at the first load",
                        ratio,
                    )
                yield CounterMetricFamily(
                    "vecf_backend_batches", "model calls made for batched /recommend calls", batcher.batches
                )
                yield CounterMetricFamily("vecf_backend_batched_rows", "users those model calls ranked", batcher.rows)


class Metrics:
    def __init__(self, state: Any) -> None:
        """`state`: the app's `app.state`, read at scrape time for the cache and model gauges."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vecf_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vecf_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.in_flight = Gauge("vecf_http_requests_in_flight", "HTTP requests being served", registry=self.registry)
        self.backend_latency = Histogram(
            "vecf_backend_call_duration_seconds",
            "model backend call latency by signature",
            ["signature"],
            buckets=BACKEND_BUCKETS,
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "vecf_backend_errors",
            "failed model backend calls by signature and error type",
            ["signature", "error"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "vecf_model_reloads",
            "model reload attempts by result (loaded, unchanged, failed)",
            ["result"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in HTTP_METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observed(self, backend: ModelBackend) -> ObservedBackend:
        return backend if isinstance(backend, ObservedBackend) else ObservedBackend(backend, self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ObservedBackend:
    """A `ModelBackend` that times every call by its contract signature and counts failures by type."""

    def __init__(self, backend: ModelBackend, metrics: Metrics) -> None:
        self.inner = backend
        self.version = backend.version
        self.grid = backend.grid
        self._metrics = metrics

    async def _timed(self, signature: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        except Exception as error:
            self._metrics.backend_errors.labels(signature, type(error).__name__).inc()
            raise
        finally:
            self._metrics.backend_latency.labels(signature).observe(time.perf_counter() - start)

    async def user_embeddings(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return await self._timed(USER_EMBEDDING.name, self.inner.user_embeddings(user_ids))

    async def history_embeddings(self, histories: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        return await self._timed(HISTORY_EMBEDDING.name, self.inner.history_embeddings(histories))

    async def recommend(self, embeddings: np.ndarray, k: int) -> list[Recommendation]:
        return await self._timed(RECOMMEND.name, self.inner.recommend(embeddings, k))

    async def recommend_candidates(self, embeddings: np.ndarray, k: int, candidates: int) -> list[Recommendation]:
        return await self._timed(RECOMMEND_CANDIDATES.name, self.inner.recommend_candidates(embeddings, k, candidates))

    async def recommend_shelf(
        self, embeddings: np.ndarray, k: int, candidates: int, shelf: str
    ) -> list[Recommendation]:
        return await self._timed(RECOMMEND_SHELF.name, self.inner.recommend_shelf(embeddings, k, candidates, shelf))

    async def score(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> np.ndarray:
        return await self._timed(SCORE.name, self.inner.score(embeddings, item_ids))

    async def attention(self, embeddings: np.ndarray, item_ids: list[str]) -> AttentionMaps:
        return await self._timed(ATTENTION.name, self.inner.attention(embeddings, item_ids))

    async def because(self, embeddings: np.ndarray, item_ids: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        return await self._timed(BECAUSE.name, self.inner.because(embeddings, item_ids))

    async def popular(self, k: int) -> tuple[list[str], np.ndarray]:
        return await self._timed(POPULAR.name, self.inner.popular(k))

    async def users(self, limit: int) -> list[str]:
        return await self._timed(USERS.name, self.inner.users(limit))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # anything else a backend offers, unobserved
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
