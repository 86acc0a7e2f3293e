"""POST /admin/reload and /admin/cache/flush: bearer-token auth in the API's error shape, and what they do."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis import Redis

from bench.servers import free_port
from service.app import create_app
from service.cache import FLUSH_BATCH
from service.settings import Settings
from tests.service.test_api import assert_error
from tests.service.test_reload import AUTH, TOKEN, FakeBackends, FakeExport

ENDPOINTS = ("/admin/reload", "/admin/cache/flush")


@pytest.fixture
def client(export: FakeExport, backends: FakeBackends):
    export.add(1)
    with TestClient(create_app(export.settings())) as client:
        yield client


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_admin_token_setting_the_endpoints_are_off(
    path: str,
    export: FakeExport,
    backends: FakeBackends,
) -> None:
    export.add(1)
    with TestClient(create_app(export.settings(admin_token=None))) as client:
        for headers in ({}, AUTH, {"Authorization": "Bearer "}):
            assert_error(client.post(path, headers=headers), 404, "admin_disabled", None, "ADMIN_TOKEN")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_missing_token_is_401_and_wrong_token_403(client: TestClient, path: str) -> None:
    for headers in ({}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}):
        response = client.post(path, headers=headers)
        assert_error(response, 401, "unauthorized", None, "Authorization: Bearer")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (TOKEN[:-1], TOKEN + "x", "x" * len(TOKEN)):
        assert_error(client.post(path, headers={"Authorization": f"Bearer {wrong}"}), 403, "forbidden", None, "wrong")
    assert_error(client.get(path, headers=AUTH), 405, "method_not_allowed", None, "GET")


def test_admin_token_must_be_long_enough() -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token="short")


def test_openapi_documents_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/admin/reload"]["post"]["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the ADMIN_TOKEN setting",
    }
    assert "/metrics" not in spec["paths"]


def test_reload_without_a_new_version_changes_nothing(client: TestClient, backends: FakeBackends) -> None:
    response = client.post("/admin/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"model_version": 1, "previous_version": 1, "changed": False}
    assert len(backends.made) == 1
    forced = client.post("/admin/reload", params={"force": "true"}, headers=AUTH)
    assert forced.json() == {"model_version": 1, "previous_version": 1, "changed": True}
    assert len(backends.made) == 2 and backends.made[0].closed


def test_reload_without_model_dir_is_409() -> None:
    with TestClient(create_app(Settings(model_dir=None, redis_url=None, admin_token=TOKEN))) as client:
        assert_error(client.post("/admin/reload", headers=AUTH), 409, "reload_failed", None, "no MODEL_DIR")


def test_flush_the_lru_cache(client: TestClient, backends: FakeBackends) -> None:
    for user in ("alice", "bob", "alice"):
        client.get("/recommend", params={"user_id": user})
    assert backends.of(1).calls["user_embeddings"] == 2
    response = client.post("/admin/cache/flush", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"cache": "lru", "flushed": 2}
    client.get("/recommend", params={"user_id": "alice"})
    assert backends.of(1).calls["user_embeddings"] == 3


def test_flush_redis_deletes_only_our_keys(
    export: FakeExport,
    backends: FakeBackends,
    redis_server: str,
) -> None:
    raw = Redis.from_url(redis_server)
    raw.flushdb()
    raw.set("someone-else:key", b"keep")
    raw.mset({f"vecf:v0:emb:user{i}": b"\x00" for i in range(FLUSH_BATCH * 2 + 7)})  # more than two batches
    export.add(1)
    with TestClient(create_app(export.settings(redis_url=redis_server))) as client:
        client.get("/recommend", params={"user_id": "alice"})
        assert raw.exists("vecf:v1:emb:alice")
        response = client.post("/admin/cache/flush", headers=AUTH)
        assert response.json() == {"cache": "redis", "flushed": FLUSH_BATCH * 2 + 8}
    assert raw.keys("vecf:*") == [] and raw.get("someone-else:key") == b"keep"
    raw.close()


def test_flush_with_redis_down_is_503(export: FakeExport, backends: FakeBackends) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # a loopback port nobody listens on
    export.add(1)
    with TestClient(create_app(export.settings(redis_url=url, retry_after_s=9))) as client:
        assert client.get("/recommend", params={"user_id": "alice"}).status_code == 200  # lookups never fail
        response = client.post("/admin/cache/flush", headers=AUTH)
        assert_error(response, 503, "cache_unavailable", None, "redis cache could not be flushed")
        assert response.headers["Retry-After"] == "9"
