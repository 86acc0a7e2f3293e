from __future__ import annotations

from fastapi import APIRouter, Response

from service.deps import MetricsDep
from service.metrics import CONTENT_TYPE

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: latency by route, status counts, cache and backend counters, model version."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
