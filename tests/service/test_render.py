"""service.render: heatmap PNGs from worker processes, the same bytes as in-thread, surviving a dead worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service import heatmap
from service.render import Renderer, RenderUnavailable

GRID = np.array([[0.1, 0.5], [0.3, 0.1]], np.float32)
BOX = (0.0, -10.0, 40.0, 50.0)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB").save(path)
    return path


def render_many(renderer: Renderer, path: Path, n: int) -> list[bytes]:
    async def go() -> list[bytes]:
        renderer.start()
        try:
            return list(await asyncio.gather(*(renderer.png(path, GRID, BOX) for _ in range(n))))
        finally:
            await renderer.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_workers_render_what_the_heatmap_module_renders(photo: Path, workers: int) -> None:
    expected = heatmap.render_file(str(photo), GRID, BOX)
    assert Image.open(photo).size == (40, 30)
    assert render_many(Renderer(workers), photo, 5) == [expected] * 5


def test_a_dead_worker_is_replaced_and_the_render_still_answers(photo: Path) -> None:
    # (vecf_render_worker_restarts_total on /metrics reads `restarts`)
    expected = heatmap.render_file(str(photo), GRID, BOX)

    async def go() -> tuple[list[bytes], int]:
        renderer = Renderer(1)
        renderer.start()
        try:
            first = await renderer.png(photo, GRID, BOX)
            (pid,) = list(renderer._pool._processes)
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.2)  # the pool notices the dead worker and marks itself broken
            after = await asyncio.gather(*(renderer.png(photo, GRID, BOX) for _ in range(3)))
            return [first, *after], renderer.restarts
        finally:
            await renderer.aclose()

    pngs, restarts = asyncio.run(go())
    assert pngs == [expected] * 4
    assert restarts == 1  # three renders saw the same broken pool; one replacement


def test_a_closed_renderer_answers_503(photo: Path) -> None:
    renderer = Renderer(1)
    renderer.start()
    asyncio.run(renderer.aclose())
    with pytest.raises(RenderUnavailable) as raised:
        asyncio.run(renderer.png(photo, GRID, BOX))
    assert raised.value.status_code == 503


def test_worker_errors_reach_the_caller(tmp_path: Path) -> None:
    async def go() -> None:
        renderer = Renderer(1)
        renderer.start()
        try:
            await renderer.png(tmp_path / "gone.jpg", GRID, BOX)
        finally:
            await renderer.aclose()

    with pytest.raises(FileNotFoundError):
        asyncio.run(go())


def test_negative_workers_are_rejected() -> None:
    with pytest.raises(ValueError, match="workers"):
        Renderer(-1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().rsplit(")", 1)[1].split()[0] == "Z")  # zombie: gone


def test_aclose_waits_for_the_workers_to_exit(photo: Path) -> None:
    async def go() -> list[int]:
        renderer = Renderer(2)
        renderer.start()
        await renderer.png(photo, GRID, BOX)
        pids = list(renderer._pool._processes)
        await renderer.aclose()
        return pids

    pids = asyncio.run(go())
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


WORKER_OF_A_KILLED_GATEWAY = """
import asyncio, sys, time
from pathlib import Path
import numpy as np
from service.render import Renderer

async def main():
    renderer = Renderer(1)
    renderer.start()
    await renderer.png(Path(sys.argv[1]), np.ones((2, 2), np.float32), (0.0, 0.0, 40.0, 30.0))
    print(*renderer._pool._processes, flush=True)
    time.sleep(60)  # killed before this ends

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_workers_exit_when_the_gateway_is_killed(photo: Path, tmp_path: Path) -> None:
    # SIGKILL (or uvicorn re-raising SIGTERM) skips every exit handler: the workers must notice by themselves.
    import subprocess
    import sys
    import time

    script = tmp_path / "gateway.py"
    script.write_text(WORKER_OF_A_KILLED_GATEWAY)
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, str(script), str(photo)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        (worker,) = map(int, parent.stdout.readline().split())
        assert _alive(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
