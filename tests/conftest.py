"""Settings every test shares. Fixtures live in the conftest of the folder whose tests use them."""

from __future__ import annotations

import os

# Heatmaps render on the gateway's threads in tests unless a test asks for worker processes
# (RENDER_WORKERS's default, 1, spawns a Python process per app: seconds over the suite's many apps).
# tests/service/test_render.py, test_api's heatmap tests and test_end_to_end cover the worker processes.
os.environ.setdefault("RENDER_WORKERS", "0")
