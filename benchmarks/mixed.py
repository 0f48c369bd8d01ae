"""Scenario 5, mixed slow work: short requests among long ones, all blocking, on fresh connections.

Each server runs the example app with 4 workers. Requests arrive at RATE per second (open
loop: a Poisson schedule fixed by a seed, the same for every server in a round, sent whether
the earlier ones were answered or not), each on a new connection. 90% are short
(`/task/sleep?seconds=0.02`), 10% long (`/task/sleep?seconds=1`); both block their worker's
event loop. Offered work: 25 x (0.9 x 0.02 + 0.1 x 1) = 2.95 worker-seconds per second, about
74% of 4 workers, so a short request is fast only if it avoids the workers busy in a long one.
The figures are the short requests' latencies. Setups:

    aioworker                start -c, one group of 4 workers, default listener (reuse_port =
                             false: one socket all workers accept from)
    aioworker-steered        the same with reuse_port = true: a socket per worker, new
                             connections steered to workers whose loop turns, queued ones
                             moved from blocked workers; it tells the listener's part
    uvicorn                  uvicorn --workers 4 (one shared socket)

They run side by side and take turns, one round each, ROUNDS times. The issue's goal compares
the default aioworker with uvicorn.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import arrivals
from benchmarks.context import Context
from benchmarks.loadgen import percentile
from benchmarks.procs import Server
from benchmarks.turns import Starter, aioworker_group, competitor, take_turns

WORKERS = 4
RATE = 25.0
SHORT = "/task/sleep?seconds=0.02"
LONG = "/task/sleep?seconds=1"
LONG_SHARE = 0.10
# The goal for aioworker: short p50 at most this, short p99 at most this times uvicorn's.
GOAL_P50_MS = 50.0
GOAL_P99_RATIO = 1.2

SETUPS = {
    "aioworker": "aioworker start -c, one group of 4 workers, default listener (reuse_port = "
    "false: one listening socket all workers accept from)",
    "aioworker-steered": "aioworker start -c, one group of 4 workers, reuse_port = true: a "
    "socket per worker, new connections steered to workers whose loop turns",
    "uvicorn": "uvicorn --workers 4 (one shared socket)",
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float


def _plan(ctx: Context) -> Plan:
    return Plan(rounds=1, seconds=8.0) if ctx.quick else Plan(rounds=3, seconds=20.0)


def schedule(seed: int, seconds: float) -> list[list[Any]]:
    """[[at_s, path], ...]: Poisson arrivals at RATE for `seconds`, LONG_SHARE of them long."""
    rng = random.Random(seed)
    out: list[list[Any]] = []
    at = 0.0
    while at < seconds:
        out.append([round(at, 4), LONG if rng.random() < LONG_SHARE else SHORT])
        at += rng.expovariate(RATE)
    return out


def _setups(ctx: Context) -> list[tuple[str, Starter]]:
    out: list[tuple[str, Starter]] = []
    if ctx.wanted("aioworker"):
        if ctx.avail.aioworker_start:
            out.append(("aioworker", aioworker_group(ctx, WORKERS)))
            steered = ("reuse_port = true",)
            out.append(("aioworker-steered", aioworker_group(ctx, WORKERS, steered)))
        else:
            ctx.note("mixed: aioworker needs `aioworker start -c`, not there yet")
    if ctx.wanted("uvicorn"):
        out.append(("uvicorn", competitor(ctx, "uvicorn", WORKERS)))
    return out


def _round(ctx: Context, server: Server, plan: list[list[Any]]) -> dict[str, Any]:
    result = arrivals.run(
        {"port": server.ports[0], "arrivals": plan, "timeout": 30.0}, ctx.load_cpus
    )
    requests = result["requests"]
    short = sorted(r["latency_ms"] for r in requests if r["path"] == SHORT)
    long = sorted(r["latency_ms"] for r in requests if r["path"] == LONG)
    return {
        "requests": len(requests),
        "short": len(short),
        "short_p50_ms": round(percentile(short, 0.5), 2),
        "short_p99_ms": round(percentile(short, 0.99), 2),
        "short_max_ms": round(short[-1], 2) if short else 0.0,
        "long_p50_ms": round(percentile(long, 0.5), 2),
        "failed": sum(r["status"] != 200 for r in requests),
        "late_ms_max": result["late_ms_max"],
    }


def _describe(r: dict[str, Any]) -> str:
    return (
        f"short p50 {r['short_p50_ms']:.1f} ms  p99 {r['short_p99_ms']:.1f} ms  "
        f"max {r['short_max_ms']:.1f} ms  long p50 {r['long_p50_ms']:.0f} ms  "
        f"failed {r['failed']}"
    )


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def summary(label: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "setup": SETUPS[label],
        "short_p50_ms": _spread([r["short_p50_ms"] for r in rounds]),
        "short_p99_ms": _spread([r["short_p99_ms"] for r in rounds]),
        "failed": sum(r["failed"] for r in rounds),
        "rounds": rounds,
    }


def verdict(setups: dict[str, Any]) -> dict[str, Any]:
    """aioworker's short p99 over uvicorn's (medians of the rounds, and round by round)."""
    ours, theirs = setups.get("aioworker"), setups.get("uvicorn")
    if not ours or not theirs:
        return {}
    ratio = ours["short_p99_ms"]["median"] / theirs["short_p99_ms"]["median"]
    per_round = [
        round(a["short_p99_ms"] / b["short_p99_ms"], 3)
        for a, b in zip(ours["rounds"], theirs["rounds"], strict=False)
        if b["short_p99_ms"]
    ]
    return {
        # Three decimals, and the verdict on the same figure the table shows.
        "p99_ratio": round(ratio, 3),
        "p99_ratio_rounds": per_round,
        "goal_p50_ms": GOAL_P50_MS,
        "goal_p99_ratio": GOAL_P99_RATIO,
        "meets": ours["short_p50_ms"]["median"] <= GOAL_P50_MS
        and round(ratio, 3) <= GOAL_P99_RATIO,
    }


def run(ctx: Context) -> dict[str, Any]:
    plan = _plan(ctx)
    setups = _setups(ctx)
    for label, _ in setups:
        ctx.progress(f"mixed: {label}: {SETUPS[label]}")
    # One schedule per round (seeded by its number), the same for every server in it.
    schedules = {number: schedule(number, plan.seconds) for number in range(1, plan.rounds + 1)}
    rounds = take_turns(
        ctx,
        "mixed",
        setups,
        plan.rounds,
        lambda number, label, server: _round(ctx, server, schedules[number]),
        _describe,
    )
    summaries = {label: summary(label, r) for label, r in rounds.items()}
    return {
        "setups": summaries,
        **verdict(summaries),
        **asdict(plan),
        "rate": RATE,
        "short_path": SHORT,
        "long_path": LONG,
        "long_share": LONG_SHARE,
        "workers": WORKERS,
    }
