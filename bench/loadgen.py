"""Closed-loop HTTP load from its own process: `concurrency` keep-alive connections, each sending the
next request of a list as soon as its previous answer is read, for `duration_s` seconds.

    python -m bench.loadgen JOB_JSON > records.json     (or @FILE: the job from a file)

job: {"host", "port", "paths": [...], "duration_s", "concurrency", "timeout_s"}; a path is a GET's path,
or {"path", "json"} for a POST of that JSON body. It prints one line
`ready` to stderr when its connections are open, then the records as JSON on stdout: for every request
its start (`time.time()`), latency in seconds, HTTP status (0: connection error, -1: timeout) and
whether a Retry-After header came with it; and its own CPU seconds.

A minimal HTTP/1.1 client on asyncio streams, not httpx: on a 2-core machine shared with the server
under test, the client's own cost per request matters; this one reads Content-Length and chunked
bodies, reconnects after errors, and nothing else. Only the standard library is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Records:
    start: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    retry_after: list[bool] = field(default_factory=list)

    def add(self, start: float, latency: float, status: int, retry_after: bool) -> None:
        self.start.append(start)
        self.latency.append(latency)
        self.status.append(status)
        self.retry_after.append(retry_after)


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: str | dict) -> tuple[int, bool]:
        """A GET of `request`, or a POST of {"path", "json"} -> (status, has Retry-After); the answer's body
        is read and dropped."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        host = f"Host: {self.host}:{self.port}\r\n"
        if isinstance(request, str):
            self.writer.write(f"GET {request} HTTP/1.1\r\n{host}\r\n".encode("latin-1"))
        else:
            body = json.dumps(request["json"]).encode()
            head = f"POST {request['path']} HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
            self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)  # the chunk and its CRLF (the last one: just CRLF)
                if size == 0:
                    break
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, "retry-after" in headers


@dataclass
class Clock:
    stop_at: float = float("inf")  # perf_counter() deadline, set once every connection is open


async def worker(n: int, job: dict, records: Records, clock: Clock, ready: asyncio.Barrier) -> None:
    paths, timeout_s = job["paths"], job["timeout_s"]
    conn = Connection(job["host"], job["port"])
    with contextlib.suppress(OSError):  # its requests fail below and are recorded
        await conn.open()
    await ready.wait()
    i = n * max(1, len(paths) // job["concurrency"])  # workers start at different paths
    while time.perf_counter() < clock.stop_at:
        path = paths[i % len(paths)]
        i += 1
        start, t0 = time.time(), time.perf_counter()
        try:
            status, retry_after = await asyncio.wait_for(conn.send(path), timeout_s)
        except TimeoutError:
            status, retry_after = -1, False
            conn.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            status, retry_after = 0, False
            conn.close()
        records.add(start, time.perf_counter() - t0, status, retry_after)
        if status <= 0:
            await asyncio.sleep(0.01)  # a refused connection fails at once: do not spin
    conn.close()


async def run(job: dict) -> Records:
    records, clock = Records(), Clock()
    ready = asyncio.Barrier(job["concurrency"] + 1)
    tasks = [asyncio.create_task(worker(n, job, records, clock, ready)) for n in range(job["concurrency"])]
    clock.stop_at = float("inf")
    async with ready:  # every connection is open (or failed to)
        clock.stop_at = time.perf_counter() + job["duration_s"]
    print("ready", file=sys.stderr, flush=True)
    await asyncio.gather(*tasks)
    return records


def main(argv: list[str] | None = None) -> int:
    given = (argv if argv is not None else sys.argv[1:])[0]
    job = json.loads(Path(given[1:]).read_text() if given.startswith("@") else given)
    records = asyncio.run(run(job))
    json.dump({**records.__dict__, "cpu_s": time.process_time()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
