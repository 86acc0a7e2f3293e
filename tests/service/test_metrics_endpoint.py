"""Observability: GET /metrics (per-app registry, route templates, cache and backend series), request ids
and one JSON access-log line per request."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import MODEL_VERSION_HEADER, REQUEST_ID_HEADER, create_app
from service.errors import BackendUnavailable
from service.logs import JsonFormatter, RequestIdFilter
from tests.service.test_reload import FakeBackends, FakeExport

ACCESS_FIELDS = {
    "ts",
    "level",
    "logger",
    "msg",
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "latency_ms",
    "model_version",
}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text, None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.fixture
def client(export: FakeExport, backends: FakeBackends):
    export.add(7)
    with TestClient(create_app(export.settings())) as client:
        yield client


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    assert client.get("/items/shoe/image").status_code == 200
    assert client.get("/items/sock/image").status_code == 404
    assert client.get("/items/hat/image").status_code == 200
    assert client.get("/nope/../etc").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    template = {"method": "GET", "route": "/items/{item_id}/image"}
    assert sample(text, "vecf_http_requests_total", **template, status="200") == 2
    assert sample(text, "vecf_http_requests_total", **template, status="404") == 1
    assert sample(text, "vecf_http_request_duration_seconds_count", **template) == 3
    assert sample(text, "vecf_http_requests_total", method="GET", route="unmatched", status="404") == 1
    for raw in ("shoe", "sock", "etc"):
        assert raw not in text  # raw paths never become labels
    assert sample(text, "vecf_http_requests_in_flight") == 1  # this scrape


def test_cache_backend_and_model_series(client: TestClient, backends: FakeBackends) -> None:
    for _ in range(3):
        assert client.get("/recommend", params={"user_id": "alice", "k": 2}).status_code == 200
    assert client.get("/explain", params={"user_id": "alice", "item_id": "bag"}).status_code == 200
    backends.of(7).unavailable = BackendUnavailable("model server down")
    assert client.get("/users").status_code == 503
    text = client.get("/metrics").text
    assert sample(text, "vecf_cache_hits_total", cache="lru") == 3
    assert sample(text, "vecf_cache_misses_total", cache="lru") == 1
    assert sample(text, "vecf_cache_errors_total", cache="lru") == 0
    assert sample(text, "vecf_backend_call_duration_seconds_count", signature="user_embedding") == 1
    assert sample(text, "vecf_backend_call_duration_seconds_count", signature="recommend") == 3
    assert sample(text, "vecf_backend_call_duration_seconds_count", signature="attention") == 1
    assert sample(text, "vecf_backend_call_duration_seconds_count", signature="score") == 1
    assert sample(text, "vecf_backend_errors_total", signature="users", error="BackendUnavailable") == 1
    assert sample(text, "vecf_http_requests_total", method="GET", route="/users", status="503") == 1
    assert sample(text, "vecf_model_version") == 7
    assert sample(text, "vecf_model_reloads_total", result="loaded") == 1
    assert sample(text, "vecf_render_workers") == client.app.state.renderer.workers  # RENDER_WORKERS
    assert sample(text, "vecf_render_worker_restarts_total") == 0


def test_each_app_has_its_own_registry(export: FakeExport, backends: FakeBackends) -> None:
    export.add(7)
    with TestClient(create_app(export.settings())) as one, TestClient(create_app(export.settings())) as two:
        one.get("/users")
        one.get("/users")
        two.get("/users")
        route = {"method": "GET", "route": "/users", "status": "200"}
        assert sample(one.get("/metrics").text, "vecf_http_requests_total", **route) == 2
        assert sample(two.get("/metrics").text, "vecf_http_requests_total", **route) == 1


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    response = client.get("/users", headers={REQUEST_ID_HEADER: "trace-42.a:b"})
    assert response.headers[REQUEST_ID_HEADER] == "trace-42.a:b"
    for unsafe in ("has space", "x" * 129, 'quote"d'):
        generated = client.get("/users", headers={REQUEST_ID_HEADER: unsafe}).headers[REQUEST_ID_HEADER]
        assert generated != unsafe and len(generated) == 32 and int(generated, 16) >= 0
    first, second = (client.get("/healthz").headers[REQUEST_ID_HEADER] for _ in range(2))
    assert first != second
    assert_error = client.get("/recommend", params={"k": 1})
    assert assert_error.status_code == 422 and REQUEST_ID_HEADER in assert_error.headers


@pytest.fixture
def json_log():
    """Root logs formatted as JSON lines into a buffer, as `service.logs.configure_logging` sets up."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_one_json_access_line_per_request(client: TestClient, backends: FakeBackends, json_log) -> None:
    client.get("/recommend", params={"user_id": "alice", "k": 2}, headers={REQUEST_ID_HEADER: "req-1"})
    backends.of(7).unavailable = BackendUnavailable("model server down")
    client.get("/recommend", params={"user_id": "bob"}, headers={REQUEST_ID_HEADER: "req-2"})
    lines = json_log()
    access = [line for line in lines if line["logger"] == "service.access"]
    assert len(access) == 2
    ok, down = access
    assert set(ok) == ACCESS_FIELDS
    assert (ok["request_id"], ok["route"], ok["path"], ok["status"], ok["model_version"]) == (
        "req-1",
        "/recommend",
        "/recommend",
        200,
        7,
    )
    assert ok["msg"] == "GET /recommend 200" and ok["latency_ms"] > 0
    assert "alice" not in json.dumps(ok)  # query strings (user ids) stay out of the access log
    assert (down["request_id"], down["status"]) == ("req-2", 503)
    warning = next(line for line in lines if line["logger"] == "service.errors")
    assert warning["request_id"] == "req-2" and "model server down" in warning["msg"]


def test_model_version_header_on_errors_too(client: TestClient) -> None:
    response = client.get("/explain", params={"user_id": "stranger", "item_id": "bag"})
    assert response.status_code == 404 and response.headers[MODEL_VERSION_HEADER] == "7"


def test_configure_logging_writes_json_lines_to_stdout() -> None:
    code = (
        "import logging; from service.logs import configure_logging, REQUEST_ID;"
        "configure_logging('json', 'INFO'); REQUEST_ID.set('r-9');"
        "logging.getLogger('uvicorn.error').info('hello %s', 'world', extra={'port': 8000})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert (record["msg"], record["logger"], record["request_id"], record["port"]) == (
        "hello world",
        "uvicorn.error",
        "r-9",
        8000,
    )
