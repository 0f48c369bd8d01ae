"""Scenario 4, one worker blocked: where fresh connections go while one of two workers sleeps.

Each server runs the example app with 2 workers. One client holds a worker in
`/task/sleep?seconds=HOLD` (time.sleep: its event loop stops). Once that call is in progress
(see benchmarks/arrivals.py: the worker holding the connection sleeps in the kernel),
CONNECTIONS fresh connections arrive one every GAP seconds (open loop, `Connection: close`),
each a `GET /info`, which any free worker answers in about a millisecond. A connection that
waited more than STRANDED_MS was "stranded": it went to the blocked worker and waited for the
sleep (or, in aioworker, for the master to move it). Setups:

    aioworker-steered        reuse_port = true: a socket per slot, the master steers
                             new connections to turning workers and moves queued ones
    aioworker-shared-socket  reuse_port = false (default): both workers accept from one socket
    uvicorn                  uvicorn --workers 2 (one shared socket)
    gunicorn                 gunicorn -k uvicorn_worker.UvicornWorker -w 2 (one shared socket)

Every setup runs side by side (an idle server costs nothing) and they take turns, one round
each, ROUNDS times, so a burst of other work on a shared machine spreads over all of them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import arrivals
from benchmarks.context import Context
from benchmarks.loadgen import percentile
from benchmarks.procs import Server
from benchmarks.turns import Starter, aioworker_group, competitor, take_turns

WORKERS = 2
STRANDED_MS = 250.0
PATH = "/info"

SETUPS = {
    "aioworker-steered": "aioworker start -c, one group of 2 workers, reuse_port = true: "
    "a socket per worker, new connections steered to workers whose loop turns",
    "aioworker-shared-socket": "aioworker start -c, one group of 2 workers, reuse_port = false "
    "(default): "
    "one listening socket both workers accept from",
    "uvicorn": "uvicorn --workers 2 (one shared socket)",
    "gunicorn": "gunicorn -k uvicorn_worker.UvicornWorker -w 2 (one shared socket)",
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    hold_s: float
    connections: int
    gap_s: float


def _plan(ctx: Context) -> Plan:
    if ctx.quick:
        return Plan(rounds=1, hold_s=2.0, connections=30, gap_s=0.02)
    return Plan(rounds=3, hold_s=6.0, connections=60, gap_s=0.02)


def _setups(ctx: Context) -> list[tuple[str, Starter]]:
    out: list[tuple[str, Starter]] = []
    if ctx.wanted("aioworker"):
        if ctx.avail.aioworker_start:
            steered, shared = ("reuse_port = true",), ("reuse_port = false",)
            out.append(("aioworker-steered", aioworker_group(ctx, WORKERS, steered)))
            out.append(("aioworker-shared-socket", aioworker_group(ctx, WORKERS, shared)))
        else:
            ctx.note("blocked: aioworker needs `aioworker start -c`, not there yet")
    out += [
        (name, competitor(ctx, name, WORKERS))
        for name in ("uvicorn", "gunicorn")
        if ctx.wanted(name)
    ]
    return out


def _round(ctx: Context, server: Server, plan: Plan) -> dict[str, Any]:
    """One hold and its arrivals against `server`; what each arrival waited."""
    result = arrivals.run(
        {
            "port": server.ports[0],
            "hold": f"/task/sleep?seconds={plan.hold_s:g}",
            "pids": server.workers(),
            "arrivals": [[i * plan.gap_s, PATH] for i in range(plan.connections)],
            "timeout": plan.hold_s + 30,
        },
        ctx.load_cpus,
    )
    hold, requests = result["hold"], result["requests"]
    latencies = sorted(r["latency_ms"] for r in requests)
    return {
        "stranded": sum(ms > STRANDED_MS for ms in latencies),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "max_ms": round(latencies[-1], 2),
        "failed": sum(r["status"] != 200 for r in requests),
        "served_by_blocked": sum(r["pid"] == hold["worker"] for r in requests),
        "hold_ms": hold["latency_ms"],
        "hold_ready_ms": hold["ready_ms"],
        "late_ms_max": result["late_ms_max"],
    }


def _describe(r: dict[str, Any]) -> str:
    return (
        f"stranded {r['stranded']:>2}  p50 {r['p50_ms']:.2f} ms  max {r['max_ms']:,.0f} ms  "
        f"served by the blocked worker {r['served_by_blocked']}  failed {r['failed']}"
    )


def summary(label: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "setup": SETUPS[label],
        "stranded": statistics.median_low(r["stranded"] for r in rounds),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 2),
        "max_ms": max(r["max_ms"] for r in rounds),
        "rounds": rounds,
    }


def run(ctx: Context) -> dict[str, Any]:
    plan = _plan(ctx)
    setups = _setups(ctx)
    for label, _ in setups:
        ctx.progress(f"blocked: {label}: {SETUPS[label]}")
    rounds = take_turns(
        ctx,
        "blocked",
        setups,
        plan.rounds,
        lambda number, label, server: _round(ctx, server, plan),
        _describe,
    )
    return {
        "setups": {label: summary(label, r) for label, r in rounds.items()},
        **asdict(plan),
        "path": PATH,
        "stranded_ms": STRANDED_MS,
        "workers": WORKERS,
    }
