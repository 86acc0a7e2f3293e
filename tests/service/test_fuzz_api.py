"""Fuzz every operation of the OpenAPI schema with schemathesis (valid and invalid inputs, a bounded number
of examples each, fixed seed): no 5xx ever, and every error comes in the API's one JSON shape."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from service.app import create_app
from tests.service.test_reload import FakeBackends, FakeExport

EXAMPLES_PER_OPERATION = 40
OPERATIONS = {
    "GET /recommend",
    "POST /recommend",
    "GET /explain",
    "POST /explain",
    "GET /explain/heatmap.png",
    "GET /items/{item_id}/image",
    "GET /users",
    "GET /healthz",
    "GET /readyz",
    "POST /admin/reload",
    "POST /admin/cache/flush",
}


@pytest.fixture
def schema(export: FakeExport, backends: FakeBackends):
    export.add(1)
    app = create_app(export.settings(model_drain_s=0))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    finally:
        shutdown_lifespans()


def check_operation(operation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def never_a_server_error(case) -> None:
        response = case.call()
        request = f"{response.request.method} {response.request.url}"
        assert response.status_code < 500, f"{request} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["code"] and error["message"], f"{request}: {response.text[:300]}"

    never_a_server_error()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gets_a_5xx(schema, mode: GenerationMode) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == OPERATIONS  # a new route is fuzzed too: add it here
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing to get wrong
        check_operation(operation, mode)
