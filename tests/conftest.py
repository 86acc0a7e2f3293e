"""Settings every test shares. Fixtures live in the conftest of the folder whose tests use them."""

from __future__ import annotations

import os

import pytest

# Heatmaps render on the gateway's threads in tests unless a test asks for worker processes
# (RENDER_WORKERS's default, 1, spawns a Python process per app: seconds over the suite's many apps).
# tests/service/test_render.py, test_api's heatmap tests and test_end_to_end cover the worker processes.
os.environ.setdefault("RENDER_WORKERS", "0")


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory: pytest.TempPathFactory):
    """The pipeline's work folder on a tiny synthetic shop (`tests.fixtures_model.build_tiny_export`): runs/vecf/
    and export/1/, built once per session. Tests must not change it; one that adds versions copies it."""
    from tests.fixtures_model import build_tiny_export

    return build_tiny_export(tmp_path_factory.mktemp("tiny"))
