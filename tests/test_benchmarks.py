"""Smoke test of the benchmark harness: the built-in load generator against the ceiling server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`: the harness is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.procs import free_port  # noqa: E402
from benchmarks.wrk import Load, LoadRun  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ceiling() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ceiling", "--port", "0"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the ready line names the bound port
    assert line.startswith("ceiling listening on "), line
    yield line.split()[-1]
    proc.terminate()
    assert proc.wait(10) == 0
    proc.stdout.close()


def _loadgen(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _check_shape(result: dict[str, object]) -> None:
    assert result["tool"] == "builtin"
    assert set(result) >= {
        "requests",
        "duration_s",
        "rps",
        "bytes",
        "latency_ms",
        "errors",
        "failed",
    }
    latency = result["latency_ms"]
    assert isinstance(latency, dict)
    assert set(latency) == {"p50", "p90", "p99", "max", "mean"}
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    errors = result["errors"]
    assert isinstance(errors, dict)
    assert set(errors) == {"connect", "read", "write", "status", "timeout"}
    assert result["failed"] == sum(errors.values())


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        pytest.param("/", [], id="hello"),
        pytest.param("/", ["--pipeline", "8"], id="pipelined"),
        pytest.param("/upload", ["--method", "POST", "--body-size", "65536"], id="upload"),
    ],
)
def test_builtin_load_against_ceiling(ceiling: str, path: str, extra: list[str]) -> None:
    result = _loadgen(ceiling + path, "-c", "8", "-d", "0.7", *extra)
    _check_shape(result)
    assert result["failed"] == 0
    requests = result["requests"]
    assert isinstance(requests, int)
    assert requests > 100
    assert isinstance(result["bytes"], int)
    assert result["bytes"] > requests * 13  # every response carried at least its body


def test_builtin_load_counts_refused_connections() -> None:
    result = _loadgen(f"http://127.0.0.1:{free_port()}/", "-c", "2", "-d", "0.3")
    assert result["requests"] == 0
    errors = result["errors"]
    assert isinstance(errors, dict)
    assert errors["connect"] > 0
    assert result["failed"] == errors["connect"]


def test_load_run_stops_early_with_figures(ceiling: str) -> None:
    # The restart scenario ends its load when the event is over: SIGINT must yield figures.
    run = LoadRun(Load(ceiling + "/", connections=4, duration=60), cpus=None, prefer_builtin=True)
    assert run.proc.stderr is not None
    assert run.proc.stderr.readline().startswith("loadgen running")
    run.stop()
    result = run.result()
    assert result["duration_s"] < 30
    assert result["failed"] == 0
    assert result["connections"] == 4
