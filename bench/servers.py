"""The processes a serving benchmark runs: the gateway (`python -m service` under uvicorn), TF Serving's
protocols (our fake, `bench.fake_tfserving`, not the tensorflow_model_server binary), redis-server, and
the load generator (`bench.loadgen`). Each on free loopback ports, stopped by its own process id."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen | None, timeout_s: float = 10.0) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGCONT)  # in case it was paused
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), threads included, and of its live
    child processes (the gateway's heatmap render workers) and the children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # a child that exited between listing and reading
    total = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            children.update(int(c) for c in (task / "children").read_text().split())
    return total / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(c) for c in children)


class Gateway:
    """`python -m service` in a subprocess; `env` holds its settings (MODEL_BACKEND, CANDIDATES, ...): the
    defaults but for `settings` (none inherited from this environment) and MODEL_POLL_S=0. Its logs (the
    JSON access log included, as in production) go to `log_path`."""

    def __init__(self, model_dir: Path, log_path: Path, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.model_dir, self.log_path = model_dir, log_path
        from service.settings import Settings

        inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        self.env = {
            **inherited,
            "MODEL_POLL_S": "0",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **{name.upper(): str(value) for name, value in settings.items() if value is not None},
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> Gateway:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "--model", str(self.model_dir), "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}); see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the gateway was not ready within {timeout_s} s; see {self.log_path}")
            time.sleep(0.2)

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=60)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def batching(self) -> str:
        """The batching the gateway serves with (BATCH_ROWS unset: chosen as the model loaded), from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        gauges = {
            family.name.removeprefix("vecf_backend_batch_"): family.samples[0].value
            for family in text_string_to_metric_families(self.get("/metrics").text)
            if family.name.startswith("vecf_backend_batch_")
        }
        if not gauges:
            return "off"
        timed = f" (4-user call: {gauges['cost_ratio']:.2f} 1-user calls)" if "cost_ratio" in gauges else ""
        return f"{gauges['rows']:.0f} users x {gauges['calls']:.0f} calls{timed}"

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def __enter__(self) -> Gateway:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeTFServing:
    """`python -m bench.fake_tfserving BASE` (bench/fake_tfserving.py: TF Serving's REST and gRPC protocols
    served from the export with tf.saved_model.load). `stop_serving`/`start_serving` close and reopen its
    ports while the process (and its loaded model) lives on: TF Serving going away and coming back."""

    def __init__(self, base: Path, log_path: Path) -> None:
        self.base, self.log_path = base, log_path
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def _command(self, line: str, timeout_s: float = 300.0) -> None:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        if line:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        deadline = time.monotonic() + timeout_s
        answer = self.process.stdout.readline().strip()  # blocks; the fake answers every command
        if answer != "ok" or time.monotonic() > deadline:
            raise RuntimeError(f"the fake TF Serving answered {answer!r} to {line or 'startup'!r}; see {self.log_path}")

    def start(self) -> FakeTFServing:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_tfserving", str(self.base), str(self.rest_port), str(self.grpc_port)],
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        self._command("")  # "ok" once both protocols listen
        return self

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return cpu_seconds(self.process.pid)

    def stop_serving(self) -> None:
        self._command("stop")

    def start_serving(self) -> None:
        self._command("start")

    def stop(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            try:
                self.process.stdin.close()  # the fake exits at end of input
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.process)
        self.process = None

    def __enter__(self) -> FakeTFServing:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Redis:
    """redis-server on a free loopback port, no persistence; `kill` and `start` again on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not on PATH (apt-get install redis-server)")
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def _pings(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout_s: float = 10.0) -> Redis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self._pings():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes with its data, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Redis:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class Load:
    """One `bench.loadgen` run in its own process; `wait()` returns its records as numpy arrays."""

    def __init__(self, url: str, paths: list[str | dict], duration_s: float, concurrency: int, timeout_s: float = 10.0):
        host, port = url.removeprefix("http://").split(":")
        self.job = {
            "host": host,
            "port": int(port),
            "paths": paths,
            "duration_s": duration_s,
            "concurrency": concurrency,
            "timeout_s": timeout_s,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Load:
        # the job in a file: thousands of POST bodies exceed the limit of a command line
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(self.job, f)
        self.job_file = Path(f.name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", f"@{self.job_file}"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        line = self.process.stderr.readline()  # "ready": connections open, the clock runs
        if line.strip() != "ready":
            raise RuntimeError(f"the load generator did not start: {line}{self.process.stderr.read()[-2000:]}")
        return self

    def wait(self) -> dict[str, np.ndarray]:
        assert self.process is not None
        try:
            out, err = self.process.communicate(timeout=self.job["duration_s"] + self.job["timeout_s"] + 60)
        finally:
            self.job_file.unlink(missing_ok=True)
        if self.process.returncode != 0:
            raise RuntimeError(f"the load generator failed: {err[-2000:]}")
        raw = json.loads(out)
        return {
            "start": np.array(raw["start"]),
            "latency": np.array(raw["latency"]),
            "status": np.array(raw["status"], dtype=int),
            "retry_after": np.array(raw["retry_after"], bool),
            "cpu_s": np.array(raw["cpu_s"]),
        }

    def run(self) -> dict[str, np.ndarray]:
        return self.start().wait()
