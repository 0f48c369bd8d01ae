"""Smoke tests of the benchmark harness: the built-in load generator against the ceiling server,
the open-loop client against an aioworker group, and the tables of the page."""

from __future__ import annotations

import contextlib
import json
import os
import socket
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
from benchmarks import (  # noqa: E402
    arrivals,
    blocked,
    features,
    mixed,
    page,
    procs,
    profile,
    ratios,
    report,
    servers,
    throughput,
    websocket,
)
from benchmarks.context import Context  # noqa: E402
from benchmarks.procs import free_port  # noqa: E402
from benchmarks.wrk import Load, LoadRun  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _serving(name: str) -> Iterator[str]:
    """`python -m benchmarks.NAME --port 0` until the block ends; its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", "--port", "0"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()  # the ready line names the bound port
        assert line.startswith(f"{name} listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()


@pytest.fixture(scope="module")
def ceiling() -> Iterator[str]:
    with _serving("ceiling") as url:
        yield url


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


# -- same-run ratios and CPU per request (benchmarks/ratios.py, procs.tree_cpu_seconds) ----------


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        pytest.param(
            [200.0, 180.0, 210.0],
            [100.0, 100.0, 100.0],
            {"median": 2.0, "low": 1.8, "high": 2.1, "rounds": 3},
            id="paired-by-round",
        ),
        # Round 2 of ours was slow and so was theirs: the per-round ratio stays 2.0, where a
        # ratio of medians (150 / 75) would be the same here but not under skewed noise.
        pytest.param(
            [200.0, 100.0],
            [100.0, 50.0],
            {"median": 2.0, "low": 2.0, "high": 2.0, "rounds": 2},
            id="noise-cancels",
        ),
        pytest.param(
            [100.0, 90.0],
            [0.0, 100.0],
            {"median": 0.9, "low": 0.9, "high": 0.9, "rounds": 1},
            id="failed-round-skipped",
        ),
        pytest.param(
            [100.0, 90.0, 80.0],
            [50.0],
            {"median": 2.0, "low": 2.0, "high": 2.0, "rounds": 1},
            id="only-paired-rounds",
        ),
        pytest.param([], [100.0], None, id="no-rounds"),
    ],
)
def test_ratio_spread_pairs_rounds(
    ours: list[float], theirs: list[float], expected: dict[str, float] | None
) -> None:
    assert ratios.ratio_spread(ours, theirs) == expected


@pytest.mark.parametrize(
    ("spread", "text"),
    [
        pytest.param({"median": 1.9, "low": 1.7, "high": 2.1, "rounds": 3}, "1.90x (1.70-2.10)"),
        pytest.param({"median": 0.93, "low": 0.93, "high": 0.93, "rounds": 1}, "0.93x"),
        pytest.param(None, "-"),
    ],
)
def test_format_ratio(spread: dict[str, float] | None, text: str) -> None:
    assert ratios.format_ratio(spread) == text


def test_cpu_per_request() -> None:
    assert ratios.cpu_us_per_request(1.5, 30_000) == 50.0
    assert ratios.cpu_us_per_request(1.5, 0) is None


_BURNER = r"""
import os, sys, time
open("/proc/self/comm", "w").write(sys.argv[1])  # a name like the ones that break naive parsing

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

kid = os.fork()
if kid == 0:
    burn(0.4)
    print("grandchild", flush=True)
    sys.stdin.read()
    os._exit(0)
burn(0.3)
print("child", flush=True)
sys.stdin.read()
os.waitpid(kid, 0)
"""


@pytest.mark.parametrize("name", ["plain", "a) b (c", "x y) 1 2"])
def test_tree_cpu_seconds_of_a_real_process_tree(name: str) -> None:
    """/proc/PID/stat of a child that burned 0.3 s of CPU and its own child 0.4 s: the tree's
    sum holds both, whatever the command name (spaces and parentheses included)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _BURNER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        assert {proc.stdout.readline().strip(), proc.stdout.readline().strip()} == {
            "child",
            "grandchild",
        }
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        assert f"({name})" in stat
        own = procs.cpu_ticks(stat) / os.sysconf("SC_CLK_TCK")
        assert 0.25 <= own < 0.7
        assert procs.stat_fields(stat)[1] == str(os.getpid())  # ppid, parsed past the name
        total = procs.tree_cpu_seconds(proc.pid)
        assert own + 0.35 <= total < own + 0.9  # the grandchild's 0.4 s is in the sum
    finally:
        proc.stdin.close()
        assert proc.wait(10) == 0
        proc.stdout.close()


def _round(rps: float, cpu: float | None) -> dict[str, Any]:
    return {"rps": rps, "cpu_us_per_req": cpu, "failed": 0, "latency_ms": {"p50": 1, "p99": 2}}


def test_throughput_versus_and_cpu_column_on_the_page() -> None:
    collected = {
        "aioworker": {"hello": [_round(380.0, 40.0), _round(400.0, 42.0), _round(420.0, 41.0)]},
        "uvicorn": {"hello": [_round(200.0, 80.0), _round(200.0, 81.0), _round(200.0, 79.0)]},
        "granian": {"hello": [_round(400.0, 30.0), _round(320.0, 30.0), _round(350.0, 30.0)]},
    }
    versus = throughput.versus(collected)
    assert versus["hello"]["uvicorn"] == {"median": 2.0, "low": 1.9, "high": 2.1, "rounds": 3}
    assert versus["hello"]["granian"] == {"median": 1.2, "low": 0.95, "high": 1.25, "rounds": 3}
    table = {
        label: {"hello": throughput._median(runs["hello"])} for label, runs in collected.items()
    }
    assert table["aioworker"]["hello"]["cpu_us_per_req"] == 41.0  # median over the rounds
    data = {"servers": table, "ratios": throughput.ratios(table), "versus": versus}
    data["plan"] = {"hello_rounds": 3, "hello_s": 3.0, "other_rounds": 3, "other_s": 2.0}
    lines = report.throughput_md(data)
    assert "| hello | 1.20x (0.95-1.25) | 2.00x (1.90-2.10) |" in lines
    assert any(line.startswith("| aioworker | 400 |") and "| 41.0 |" in line for line in lines)
    assert lines[-1] == (
        "Hello world against the goal, medians of the per-round ratios: 2.00x uvicorn (goal 2x: "
        "met), 1.20x granian (goal 1.2x: met)."
    )
    versus["hello"]["granian"]["median"] = 1.19
    assert "1.19x granian (goal 1.2x: missed)" in report.throughput_md(data)[-1]
    versus["fastapi"] = {
        "uvicorn": {"median": 1.05, "low": 1.0, "high": 1.1, "rounds": 3},
        "granian": {"median": 0.98, "low": 0.9, "high": 1.0, "rounds": 3},
    }
    assert report.throughput_md(data)[-1] == (
        "FastAPI route against the goal (ahead of both): 1.05x uvicorn (ahead), "
        "0.98x granian (not ahead)."
    )


def test_tls_setup_serves_https_that_wrk_loads(tmp_path: Path) -> None:
    # The feature scenario's tls setup: a real master on an https:// listen with the
    # certificate made for the run, ready once a TLS GET answers, loaded by wrk over https.
    ctx = Context(True, servers.Availability(), None, None)
    server = features._starter(ctx, "tls")(tmp_path)
    try:
        port = server.ports[0]
        assert procs.http_get(port, tls=True) == 200
        assert procs.http_get(port) == 0  # plain HTTP gets no answer: the port speaks TLS only
        result = ctx.load(Load(f"https://127.0.0.1:{port}/", 4, 1.0))
    finally:
        server.stop()
    assert result["requests"] > 0
    assert result["failed"] == 0


def test_feature_costs_against_plain_round_by_round() -> None:
    runs = {
        "plain": [_round(100.0, 50.0), _round(80.0, 52.0), _round(90.0, 51.0)],
        "access-log": [_round(50.0, 100.0), _round(44.0, 110.0), _round(36.0, 105.0)],
    }
    setups = features.summarise(runs)
    assert setups["plain"]["vs_plain"] is None
    assert setups["access-log"]["vs_plain"] == {
        "median": 0.5,
        "low": 0.4,
        "high": 0.55,
        "rounds": 3,
    }
    lines = features.features_md({"setups": setups, "rounds": 3, "seconds": 3.0})
    row = next(line for line in lines if line.startswith("| access-log |"))
    assert "| 44 | 0.50x (0.40-0.55) | 105.0 | +54.0 | 0 |" in row


# -- the profile (benchmarks/profile.py) --------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "function", "part"),
    [
        pytest.param("/x/aioworker/http/parser.py", "on_header", "parsing", id="parser"),
        pytest.param("~", "<method 'feed_data' of 'httptools' objects>", "parsing", id="llhttp"),
        pytest.param("/x/aioworker/http/cycle.py", "_scope", "scope", id="scope"),
        pytest.param("/x/aioworker/http/cycle.py", "begin", "task", id="begin"),
        pytest.param("/x/aioworker/http/cycle.py", "_account", "accounting", id="account"),
        pytest.param("~", "<built-in method time.monotonic>", "accounting", id="clock"),
        pytest.param("/x/aioworker/http/framing.py", "_start", "send path", id="framing"),
        pytest.param("/x/aioworker/http/connection.py", "write", "send path", id="write"),
        pytest.param("/x/aioworker/http/connection.py", "data_received", "connection", id="conn"),
        pytest.param("/x/asyncio/events.py", "_run", "event loop", id="loop"),
    ],
)
def test_profile_parts(filename: str, function: str, part: str) -> None:
    assert profile.part_of(filename, function).startswith(part)


def test_profile_of_a_real_engine_renders_on_the_page() -> None:
    """A real child engine, 2,000 requests from the raw-socket client, profiled: every part of
    the engine shows up, the shares add up, and the page renders them."""
    data = profile.python_profile("uvloop", requests=2000)
    parts = data["parts"]
    assert 99.0 <= sum(parts.values()) <= 101.0
    for part in ("parsing", "scope", "task", "send path", "accounting", "the app"):
        assert any(name.startswith(part) and share > 0 for name, share in parts.items()), part
    top = {f["function"].rsplit(" ", 1)[-1]: f for f in data["top"]}
    assert top["_start"]["calls_per_request"] == 1.0
    results = _results()
    results["profile"] = {
        "command": "python -m benchmarks.profile",
        "revision": "abc1234",
        "python": "3.11.7",
        "instructions_per_request": {
            "uvloop": {
                "total": 105502,
                "libraries": {"Python interpreter": 90000, "uvloop": 15502},
            },
            "asyncio": {"total": 150000, "libraries": {"Python interpreter": 150000}},
        },
        "cprofile": data,
    }
    text = page.render(results)
    assert (
        "Instructions per request (callgrind; the same on a busy machine): uvloop 105,502, "
        "asyncio 150,000." in text
    )
    assert "| Python interpreter | 90,000 | 150,000 |" in text
    assert "| uvloop | 15,502 | 0 |" in text
    assert any(line.startswith("| parsing (httptools callbacks") for line in text.splitlines())


ANNOTATED = """\
--------------------------------------------------------------------------------
1,000 (100.0%)  PROGRAM TOTALS
--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
  600 (60.00%)  /tmp/Python-3.11.7/Python/ceval.c:_PyEval_EvalFrameDefault'2 [/x/libpython3.11.so]
  100 (10.00%)  /tmp/Python-3.11.7/./Include/object.h:_PyFrame_Clear
  150 (15.00%)  ???:uv__io_poll [/v/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so]
  100 (10.00%)  ???:llhttp__internal__run [/v/site-packages/httptools/parser/parser.so]
   50 (5.00%)  ./string/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms [/lib/libc.so.6]
"""


def test_callgrind_instructions_by_library() -> None:
    """callgrind_annotate's lines summed per library; a function inlined from Python's headers
    (no shared object named) counts as the interpreter's; the totals line is not counted."""
    assert profile.callgrind_by_library(ANNOTATED) == {
        "Python interpreter (bytecode, objects, memory)": 700,
        "uvloop and libuv": 150,
        "httptools and llhttp": 100,
        "libc (memcpy, malloc, syscall wrappers)": 50,
    }


# -- the websocket scenario (benchmarks/websocket.py): registration, figures, the page ----------


def test_websocket_is_a_scenario_with_short_quick_settings() -> None:
    assert "websocket" in bench_main.SCENARIOS
    assert bench_main.parse_args(["--quick", "--only", "websocket"]).only == ["websocket"]
    quick, full = websocket.plan(True), websocket.plan(False)
    assert quick.rounds < full.rounds
    assert quick.idle < full.idle
    assert quick.seconds < full.seconds


def _ws(idle: float, small: float, large: float) -> dict[str, float]:
    return {"idle_kib": idle, "small": small, "large": large}


# Three rounds; uvicorn-websockets failed its second, uvicorn-wsproto every one.
WS_RUNS: dict[str, list[dict[str, float] | None]] = {
    "aioworker": [_ws(4.0, 20000.0, 100.0), _ws(5.0, 18000.0, 90.0), _ws(6.0, 21000.0, 110.0)],
    "uvicorn-websockets": [_ws(20.0, 10000.0, 50.0), None, _ws(30.0, 10000.0, 100.0)],
    "uvicorn-wsproto": [None, None, None],
    "granian": [_ws(8.0, 10000.0, 100.0), _ws(10.0, 9000.0, 60.0), _ws(6.0, 7000.0, 55.0)],
}


def test_websocket_medians_and_ratios_pair_only_rounds_both_ran() -> None:
    table = websocket.summarise(WS_RUNS)
    assert {k: table["aioworker"][k] for k in websocket.KINDS} == _ws(5.0, 20000.0, 100.0)
    assert {k: table["uvicorn-websockets"][k] for k in websocket.KINDS} == _ws(25.0, 10000.0, 75.0)
    assert table["uvicorn-websockets"]["rounds"]["idle_kib"] == [20.0, None, 30.0]
    assert {k: table["uvicorn-wsproto"][k] for k in websocket.KINDS} == dict.fromkeys(
        websocket.KINDS
    )
    versus = websocket.versus(WS_RUNS)
    assert versus["small"] == {
        "uvicorn-websockets": {"median": 2.05, "low": 2.0, "high": 2.1, "rounds": 2},
        "granian": {"median": 2.0, "low": 2.0, "high": 3.0, "rounds": 3},
    }
    assert versus["idle_kib"]["granian"] == {"median": 0.5, "low": 0.5, "high": 1.0, "rounds": 3}
    assert versus["large"]["uvicorn-websockets"]["median"] == 1.55


def test_websocket_table_and_summary_on_the_page() -> None:
    data = {
        "servers": websocket.summarise(WS_RUNS),
        "versus": websocket.versus(WS_RUNS),
        "plan": {"idle": 10000, "rounds": 3, "seconds": 8.0, "deflate": False},
    }
    lines = page.render(_results(websocket=data)).splitlines()
    assert (
        "### WebSockets: one worker each, 10,000 idle WebSockets, echo runs of 8 s; median of 3 "
        "rounds, each server started afresh for each"
    ) in lines
    assert "| aioworker | 5.0 | 20,000 | 100.0 |" in lines
    assert "| uvicorn-websockets | 25.0 | 10,000 | 75.0 |" in lines
    assert "| uvicorn-wsproto | - | - | - |" in lines
    assert "| measure | vs granian | vs uvicorn-websockets |" in lines
    assert "| idle KiB per WebSocket | 0.50x (0.50-1.00) | 0.20x (0.20-0.20) |" in lines
    assert "| echo msg/s, 16 B (50 conns) | 2.00x (2.00-3.00) | 2.05x (2.00-2.10) |" in lines
    assert "| echo msg/s, 1 MiB (4 conns) | 1.50x (1.00-2.00) | 1.55x (1.10-2.00) |" in lines
    assert (
        "- WebSockets, one worker each, aioworker: idle KiB per WebSocket 5.0 (0.20x (0.20-0.20) "
        "uvicorn-websockets, 0.50x (0.50-1.00) granian); 16 B echoes/s 20,000 (2.05x "
        "(2.00-2.10) uvicorn-websockets, 2.00x (2.00-3.00) granian) (aioworker's figure over "
        "each server's, per round)."
    ) in lines
    assert any(line.startswith("5. **websocket**") for line in lines)
    assert any(line.startswith("- **websocket**") for line in lines)


def test_page_without_the_websocket_scenario_shows_none_of_it() -> None:
    text = page.render(_results())
    assert "WebSocket" not in text
    assert "**websocket**" not in text


def test_the_floor_runs_the_app_with_keep_alive_and_closes_when_asked() -> None:
    with _serving("floor") as url:
        port = int(url.rsplit(":", 1)[-1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            data = b""
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"xxx"):
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n")
            assert b"\r\n\r\nHello, world!HTTP/1.1 200 OK\r\n" in data
            sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            rest = b""
            while chunk := sock.recv(4096):  # EOF: the floor closed the connection
                rest += chunk
            assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n")
