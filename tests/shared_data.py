"""The real data in ../shared/data (beside the repo, never inside it): tests that need it skip with
the reason where it is absent, and fail instead under CI=true, where it must be there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        reason = f"real data {folder} is absent (it lives outside the repo, in ../shared/data)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)
    return folder
