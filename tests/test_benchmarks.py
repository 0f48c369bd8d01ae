"""Smoke tests of the benchmark harness: the built-in load generator against the ceiling server,
the open-loop client against an aioworker group, and the tables of the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`: the harness is not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as bench_main  # noqa: E402
from benchmarks import arrivals, blocked, mixed, page, report, servers  # noqa: E402
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


# The one-worker-blocked and mixed-slow-work scenarios: registration, their open-loop client on a
# real aioworker group, and their tables on the page.


def test_blocked_and_mixed_are_scenarios() -> None:
    assert {"blocked", "mixed"} <= set(bench_main.SCENARIOS)
    args = bench_main.parse_args(["--quick", "--only", "blocked", "--only", "mixed"])
    assert args.only == ["blocked", "mixed"]


def test_arrivals_hold_a_sleeping_worker_then_send_fresh_connections(tmp_path: Path) -> None:
    server = servers.start_group(tmp_path, 2, cpus=None)
    try:
        workers = server.workers()
        result = arrivals.run(
            {
                "port": server.ports[0],
                "hold": "/task/sleep?seconds=1",
                "pids": workers,
                "arrivals": [[i * 0.02, "/info"] for i in range(5)],
                "timeout": 20,
            },
            cpus=None,
        )
    finally:
        server.stop()
    hold = result["hold"]
    # The arrivals started once a worker was seen sleeping, so before the sleep was over.
    assert hold["worker"] in workers
    assert hold["status"] == 200
    assert hold["ready_ms"] < 1000 <= hold["latency_ms"]
    assert [r["at"] for r in result["requests"]] == [0.0, 0.02, 0.04, 0.06, 0.08]
    for record in result["requests"]:
        assert record["status"] == 200
        assert record["pid"] in workers  # /info names the worker that answered


def test_arrivals_record_refused_connections() -> None:
    plan = {"port": free_port(), "arrivals": [[0, "/"], [0.01, "/"]], "timeout": 5}
    result = arrivals.run(plan, cpus=None)
    assert result["hold"] is None
    assert [(r["status"], r["error"]) for r in result["requests"]] == [
        (0, "ConnectionRefusedError"),
        (0, "ConnectionRefusedError"),
    ]


@pytest.mark.parametrize(
    ("log", "moved"),
    [
        pytest.param("", 0, id="nothing"),
        pytest.param("INFO aioworker.master: busy pid=7 group=web slot=0\n", 0, id="busy-only"),
        pytest.param(
            "INFO aioworker.master: moved 3 queued connections group=web slot=0\n"
            "INFO aioworker.master: moved 1 queued connections group=web slot=1 (1 lost)\n",
            4,
            id="two-moves",
        ),
    ],
)
def test_moved_connections_read_from_the_master_log(log: str, moved: int) -> None:
    assert servers.moved_connections(log) == moved


def test_mixed_schedule_is_seeded_poisson_with_a_tenth_long() -> None:
    first = mixed.schedule(1, 20.0)
    assert first == mixed.schedule(1, 20.0)
    assert first != mixed.schedule(2, 20.0)
    times = [at for at, _ in first]
    assert times == sorted(times)
    assert times[0] == 0.0
    assert times[-1] < 20.0
    assert 400 <= len(first) <= 600  # 25/s for 20 s
    long = sum(path == mixed.LONG for _, path in first)
    assert {path for _, path in first} == {mixed.SHORT, mixed.LONG}
    assert 0.05 <= long / len(first) <= 0.15


def _blocked_round(stranded: int, moved: int | None) -> dict[str, object]:
    return {
        "stranded": stranded,
        "p50_ms": 0.7,
        "max_ms": 146.0 if moved else 6012.0,
        "failed": 0,
        "served_by_blocked": 0 if moved is not None else stranded,
        "hold_ms": 6010.0,
        "hold_ready_ms": 15.0,
        "late_ms_max": 1.0,
        "moved": moved,
    }


def _mixed_round(p50: float, p99: float, moved: int | None) -> dict[str, object]:
    return {
        "requests": 500,
        "short": 450,
        "short_p50_ms": p50,
        "short_p99_ms": p99,
        "short_max_ms": p99 + 50,
        "long_p50_ms": 1002.0,
        "failed": 0,
        "late_ms_max": 1.0,
        "moved": moved,
    }


def _mixed_data(ours: tuple[float, float], theirs: tuple[float, float]) -> dict[str, Any]:
    setups = {
        "aioworker": mixed.summary("aioworker", [_mixed_round(*ours, moved=5)] * 3),
        "uvicorn": mixed.summary("uvicorn", [_mixed_round(*theirs, moved=None)] * 3),
    }
    return {
        "setups": setups,
        **mixed.verdict(setups),
        "rounds": 3,
        "seconds": 20.0,
        "rate": 25.0,
        "short_path": mixed.SHORT,
        "long_path": mixed.LONG,
        "long_share": 0.1,
        "workers": 4,
    }


def _results(**scenarios: Any) -> dict[str, Any]:
    machine = {
        "revision": "abc1234",
        "nproc": 2,
        "cpus_usable": 2,
        "cpu_model": "test CPU",
        "python": "3.11.7",
        "kernel": "6.1",
        "packages": {"aioworker": "0.1"},
        "wrk": "",
    }
    meta = {
        "command": "python -m benchmarks --only blocked --only mixed",
        "quick": False,
        "scenarios": list(scenarios),
        "machine": machine,
        "load_generator": "wrk, 1 thread",
        "pinning": "servers pinned to CPU [0], load generator to CPU [1]",
        "aioworker_via": "python -m aioworker serve",
        "started": "2026-01-01T00:00:00Z",
        "finished": "2026-01-01T00:04:00Z",
        "notes": [],
    }
    return {**scenarios, "memory": {}, "meta": meta}


def test_page_renders_the_blocked_and_mixed_tables() -> None:
    blocked_data = {
        "setups": {
            "aioworker-steered": blocked.summary(
                "aioworker-steered", [_blocked_round(0, 3), _blocked_round(1, 4)]
            ),
            "uvicorn": blocked.summary(
                "uvicorn", [_blocked_round(0, None), _blocked_round(2, None)]
            ),
        },
        "rounds": 2,
        "hold_s": 6.0,
        "connections": 60,
        "gap_s": 0.02,
        "path": "/info",
        "stranded_ms": 250.0,
        "workers": 2,
    }
    text = page.render(_results(blocked=blocked_data, mixed=_mixed_data((30.0, 220.0), (20, 200))))
    lines = text.splitlines()
    assert "| aioworker-steered | 0 | 0, 1 | 0.70 | 146 | 0, 0 | 3, 4 | 0 |" in lines
    # uvicorn moves nothing: "-", and its stranded connections were served by the blocked worker.
    assert "| uvicorn | 0 | 0, 2 | 0.70 | 6,012 | 0, 2 | - | 0 |" in lines
    assert (
        "| aioworker | 30.0 (30.0 to 30.0) | 220 (220 to 220) | 220, 220, 220 "
        "| 1,002, 1,002, 1,002 | 5, 5, 5 | 0 |"
    ) in lines
    assert any(
        line.startswith("aioworker short p99 / uvicorn short p99: **1.100x**") for line in lines
    )
    for described in ("5. **blocked**", "6. **mixed**", "- **blocked**", "- **mixed**"):
        assert any(line.startswith(described) for line in lines), described
    assert any(line.startswith("- One of 2 workers blocked, 60 fresh") for line in lines)


def test_page_without_the_new_scenarios_does_not_describe_them() -> None:
    text = page.render(_results())
    assert "**blocked**" not in text
    assert "**mixed**" not in text


@pytest.mark.parametrize(
    ("ours", "theirs", "ratio", "verdict"),
    [
        pytest.param((30.0, 220.0), (20.0, 200.0), 1.1, "meets", id="within-both-goals"),
        pytest.param((30.0, 240.0), (20.0, 200.0), 1.2, "meets", id="p99-at-the-goal"),
        pytest.param((30.0, 241.0), (20.0, 200.0), 1.205, "misses", id="p99-just-above"),
        pytest.param((30.0, 260.0), (20.0, 200.0), 1.3, "misses", id="p99-too-high"),
        pytest.param((60.0, 200.0), (20.0, 200.0), 1.0, "misses", id="p50-too-high"),
    ],
)
def test_mixed_verdict_against_the_goal(
    ours: tuple[float, float], theirs: tuple[float, float], ratio: float, verdict: str
) -> None:
    data = _mixed_data(ours, theirs)
    assert data["p99_ratio"] == ratio
    assert data["meets"] is (verdict == "meets")
    assert f"aioworker **{verdict}** it." in "\n".join(report.mixed_md(data))
