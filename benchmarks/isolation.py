"""Scenario 2, isolation: a fast route's latency and throughput, idle and while a blocking route
is saturated.

The slow route is the example app's /task/sleep (time.sleep(0.05): it blocks its worker's event
loop). "Saturated" means SLOW_PER_WORKER times more concurrent slow connections than workers
that serve it, so every worker that takes slow requests always has one waiting. Setups:

    uvicorn-shared       uvicorn --workers 2, fast and slow routes on the same workers
    aioworker-shared     aioworker, one group of 2 workers serving both
    aioworker-groups     aioworker, group web (2 workers) for /, group task (2 workers) for /task
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.context import Context
from benchmarks.procs import Server, free_port
from benchmarks.wrk import Load

WORKERS = 2
SLOW_PER_WORKER = 4
FAST_CONNECTIONS = 32
SLOW_PATH = "/task/sleep?seconds=0.05"

# label -> description, as printed under the table
SETUPS = {
    "uvicorn-shared": "uvicorn --workers 2 serving / and /task/sleep",
    "aioworker-shared": "aioworker, one group of 2 workers serving / and /task/sleep",
    "aioworker-groups": "aioworker, group web (2 workers) serves /, group task (2 workers) /task",
}


def _start_uvicorn(ctx: Context, tmp: Path) -> tuple[Server, int, int]:
    server = servers.start("uvicorn", servers.EXAMPLE_APP, WORKERS, ctx.server_cpus, ctx.avail)
    return server, server.ports[0], server.ports[0]


def _start_shared(ctx: Context, tmp: Path) -> tuple[Server, int, int]:
    if ctx.avail.aioworker_start:
        port = free_port()
        config = servers.aioworker_config(tmp, {"web": (port, WORKERS, ["/"])})
        server = servers.start_master(config, [port], WORKERS, ctx.server_cpus)
    else:
        server = servers.start(
            "aioworker", servers.EXAMPLE_APP, WORKERS, ctx.server_cpus, ctx.avail
        )
        port = server.ports[0]
    return server, port, port


def _start_groups(ctx: Context, tmp: Path) -> tuple[Server, int, int]:
    web, task = free_port(), free_port()
    config = servers.aioworker_config(
        tmp, {"web": (web, WORKERS, ["/"]), "task": (task, WORKERS, ["/task"])}
    )
    server = servers.start_master(config, [web, task], 2 * WORKERS, ctx.server_cpus)
    return server, web, task


Starter = Callable[[Context, Path], tuple[Server, int, int]]


def _setups(ctx: Context) -> list[tuple[str, Starter]]:
    out: list[tuple[str, Starter]] = []
    if ctx.wanted("uvicorn"):
        out.append(("uvicorn-shared", _start_uvicorn))
    if ctx.wanted("aioworker"):
        if ctx.avail.aioworker_start or ctx.avail.aioworker_serve:
            out.append(("aioworker-shared", _start_shared))
        else:
            ctx.note("isolation: aioworker setups need `aioworker start`/`serve`, not there yet")
        if ctx.avail.aioworker_start:
            out.append(("aioworker-groups", _start_groups))
        elif ctx.avail.aioworker_serve:
            ctx.note("isolation: aioworker-groups needs `aioworker start -c`, not there yet")
    return out


def _ratio(loaded: float, idle: float) -> float | None:
    return float(f"{loaded / idle:.3g}") if idle else None


def _measure(ctx: Context, label: str, starter: Starter, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-iso-") as tmp:
        server, fast_port, slow_port = starter(ctx, Path(tmp))
        try:
            ctx.record_memory(label, "idle", server)
            fast = Load(f"http://127.0.0.1:{fast_port}/", FAST_CONNECTIONS, seconds, timeout=30)
            idle = ctx.load(fast)
            ctx.progress(
                f"  {label:<18} idle    fast {idle['rps']:>9,.0f} req/s  "
                f"p50 {idle['latency_ms']['p50']:.2f} ms  p99 {idle['latency_ms']['p99']:.2f} ms"
            )
            # The slow load runs until the fast measurement is over, then is stopped.
            slow_run = ctx.start_load(
                Load(
                    f"http://127.0.0.1:{slow_port}{SLOW_PATH}",
                    WORKERS * SLOW_PER_WORKER,
                    seconds + 600,
                    timeout=60,
                )
            )
            try:
                loaded = ctx.load(fast)
            finally:
                slow_run.stop()
                slow = slow_run.result()
            ctx.progress(
                f"  {label:<18} loaded  fast {loaded['rps']:>9,.0f} req/s  "
                f"p50 {loaded['latency_ms']['p50']:.2f} ms  "
                f"p99 {loaded['latency_ms']['p99']:.2f} ms"
                f"  (slow route {slow['rps']:.0f} req/s)"
            )
            ctx.record_memory(label, "after isolation", server)
        finally:
            ctx.stop(server, label)
    return {
        "setup": SETUPS[label],
        "idle": idle,
        "loaded": loaded,
        "slow": slow,
        "ratios": {
            "p50": _ratio(loaded["latency_ms"]["p50"], idle["latency_ms"]["p50"]),
            "p99": _ratio(loaded["latency_ms"]["p99"], idle["latency_ms"]["p99"]),
            "rps": _ratio(loaded["rps"], idle["rps"]),
        },
    }


def run(ctx: Context) -> dict[str, Any]:
    seconds = 2.0 if ctx.quick else 8.0
    results: dict[str, Any] = {}
    for label, starter in _setups(ctx):
        ctx.progress(f"isolation: {SETUPS[label]}")
        try:
            results[label] = _measure(ctx, label, starter, seconds)
        except RuntimeError as exc:
            ctx.note(f"isolation {label} failed: {str(exc).splitlines()[0]}")
    return {
        "setups": results,
        "seconds": seconds,
        "slow_path": SLOW_PATH,
        "slow_connections": WORKERS * SLOW_PER_WORKER,
        "fast_connections": FAST_CONNECTIONS,
    }
