"""`python -m bench.serve --quick`: the serving benchmark's whole machinery (real gateways under uvicorn,
the load generator, the fake TF Serving, redis-server, a model swap) on a tiny synthetic model, with
sub-second runs. Checks what it writes, never how fast anything was. About a minute and a half on 2 cores."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from bench.serve import main

STATS = {
    "requests",
    "failed",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "concurrency",
    "duration_s",
    "gateway_cpu_ms_per_request",
    "client_cpu_ms_per_request",
    "load_avg_1m",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH; the benchmark's Redis fault run needs it")
    root = tmp_path_factory.mktemp("bench-serve")
    assert (
        main(
            [
                "--quick",
                "--hm-export",
                str(root / "no-export"),
                "--work",
                str(root / "work"),
                "--out",
                str(root / "out"),
            ]
        )
        == 0
    )
    return json.loads((root / "out" / "serve.json").read_text()), (root / "out" / "serve.md").read_text()


def test_latency_rows_cover_every_backend_and_ranking(result: tuple[dict, str]) -> None:
    report, _ = result
    rows = {(r["model"], r["backend"], r["ranking"], r["endpoint"], r["concurrency"]): r for r in report["latency"]}
    # the headline rows run with no serving settings: the export's own candidate count, measured at export
    assert report["plan"]["candidates"] is None and report["plan"]["large_candidates"] is None
    served = report["recall"]["hm"]["served"]
    default = f"default: two-stage C={served} (the export's)" if served else "default: exact (the export's)"
    rankings = [default, "exact"] if served else [default]
    concurrency = report["plan"]["concurrency"]
    for backend in ("inprocess", "rest", "grpc"):
        for ranking in rankings:
            assert ("hm", backend, ranking, "/recommend?k=20", concurrency) in rows, (backend, ranking)
    assert ("hm", "inprocess", default, "/recommend?k=20", 1) in rows
    assert ("hm", "inprocess", "-", "/explain/heatmap.png", concurrency) in rows
    for label in ("each history folded in once, then cached", "folded in every time"):  # shoppers by history
        assert ("hm", "inprocess", default, f"POST /recommend (history, {label})", concurrency) in rows, label
    large = {r["ranking"] for r in report["latency"] if r["model"] == "large" and r["concurrency"] == concurrency}
    large_served = report["recall"]["large"]["served"]
    large_default = (
        f"default: two-stage C={large_served} (the export's)" if large_served else "default: exact (the export's)"
    )
    assert large == {f"{large_default}, {label}" for label in ("default batching", "BATCH_ROWS=16, BATCH_CALLS=2")}
    for row in report["latency"]:
        assert set(row) >= STATS, row["name"]
        # Every gateway batches (BATCH_ROWS unset: chosen at load); the fixed 200k row keeps its setting
        timed = r"( \(4-user call: [\d.]+ 1-user calls\))?"
        assert re.fullmatch(r"\d+ users x \d+ calls" + timed, row["batching"]), row["name"]
        assert ("BATCH_ROWS" in row["ranking"]) == ("1-user calls" not in row["batching"]), row["name"]
        assert "BATCH_ROWS=16" not in row["ranking"] or row["batching"] == "16 users x 2 calls", row["name"]
        assert set(row["noop"]) >= STATS, row["name"]
        assert row["requests"] > 0 and row["failed"] == 0, row["name"]
        assert row["noop"]["requests"] > 0 and row["noop"]["failed"] == 0, row["name"]
        # The fake TF Serving shares the cores: remote rows say what it spent per request
        remote = row["backend"] in ("rest", "grpc")
        assert ("model_server_cpu_ms_per_request" in row) == remote, row["name"]
        assert not remote or row["model_server_cpu_ms_per_request"] > 0, row["name"]


def test_recall_rows_and_model_timings(result: tuple[dict, str]) -> None:
    report, _ = result
    for name in ("hm", "large"):
        recall = report["recall"][name]
        assert [r["candidates"] for r in recall["rows"]] == sorted(r["candidates"] for r in recall["rows"])
        for row in recall["rows"]:
            assert 0.0 <= row["recall@50"] <= 1.0 and 0.0 <= row["recall@50_uniform_weights"] <= 1.0
        assert "exact_recommend_k20_ms" in recall["model_call_median"]
        assert set(recall["attention_of_exact_top"]) == {"max_weight", "normalized_entropy", "uniform_weight"}
        assert report["models"][name]["items"] > 0


def test_fault_runs(result: tuple[dict, str]) -> None:
    report, _ = result
    faults = report["faults"]
    assert set(faults) == {"redis_restart", "model_swap", "tfserving_down_rest", "tfserving_down_grpc"}
    for name, fault in faults.items():
        assert {"requests", "failed", "max_ms", "events_s", "target", "met"} <= set(fault), name
        assert fault["requests"] > 0, name
    assert faults["redis_restart"]["failed"] == 0
    assert faults["model_swap"]["failed"] == 0 and faults["model_swap"]["reload"]["changed"] is True
    assert faults["model_swap"]["serving_after"] == 2
    for kind in ("rest", "grpc"):
        down = faults[f"tfserving_down_{kind}"]
        assert down["failed_503_with_retry_after"] == down["failed"], down  # every failure a 503 + Retry-After
        assert down["recovered_after_s"] is not None, down


def test_markdown_report(result: tuple[dict, str]) -> None:
    report, md = result
    for heading in (
        "## Latency and throughput",
        "## Targets (issue #4)",
        "## Two-stage recall@50",
        "## Faults under load",
    ):
        assert heading in md
    assert md.count("| hm | ") == sum(r["model"] == "hm" for r in report["latency"])
    assert "not the tensorflow_model_server binary" in md


def test_cpu_seconds_count_live_child_processes() -> None:
    # The gateway renders heatmaps in child processes: their CPU belongs to its CPU per request.
    import subprocess
    import sys
    import time

    from bench.servers import cpu_seconds

    burn = "import time; end = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(5)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"]
    )
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(parent.pid) >= 0.4  # the child's burn; the parent itself only waits
    finally:
        parent.kill()
        parent.wait()
