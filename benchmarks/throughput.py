"""Scenario 1, throughput: one worker per server, hello world, pipelining, big bodies, uploads.

All servers run side by side on the server CPU and take turns under load (see `run`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import servers
from benchmarks.apps import FASTAPI
from benchmarks.context import Context
from benchmarks.procs import Server
from benchmarks.ratios import cpu_us_per_request, ratio_spread
from benchmarks.wrk import Load

# mode -> (path, connections, pipeline depth, upload bytes)
MODES: dict[str, tuple[str, int, int, int]] = {
    "hello": ("/", 64, 1, 0),
    "pipelined": ("/", 64, 16, 0),
    "64k": ("/bytes/65536", 64, 1, 0),
    "1m": ("/bytes/1048576", 16, 1, 0),
    "upload": ("/upload", 16, 1, 1048576),
    "fastapi": ("/fastapi/items/42?q=bench", 64, 1, 0),
}
# The ceiling answers every path with the same bytes: a framework route means nothing there.
NOT_FOR_CEILING = ("fastapi",)
# The floor (benchmarks/floor.py) reads no request body and has no flow control: it runs the
# hello world and FastAPI routes only.
FLOOR_MODES = ("hello", "fastapi")
QUICK_ALL_MODES = ("aioworker", "uvicorn", "ceiling")  # --quick runs the other modes only here


@dataclass(frozen=True)
class Plan:
    hello_rounds: int
    hello_s: float
    other_rounds: int
    other_s: float
    warm_s: float


def _plan(ctx: Context) -> Plan:
    if ctx.quick:
        return Plan(hello_rounds=1, hello_s=2.0, other_rounds=1, other_s=1.0, warm_s=0.0)
    return Plan(hello_rounds=5, hello_s=3.0, other_rounds=3, other_s=2.0, warm_s=1.0)


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r["rps"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(results) > 1:
        chosen["rounds_rps"] = [r["rps"] for r in results]
        chosen["spread_pct"] = round(
            100
            * (max(r["rps"] for r in results) - min(r["rps"] for r in results))
            / max(statistics.median(r["rps"] for r in results), 1e-9),
            1,
        )
    cpu = [r["cpu_us_per_req"] for r in results if r.get("cpu_us_per_req") is not None]
    if cpu:  # the median over rounds, not the median-rps round's own figure
        chosen["cpu_us_per_req"] = round(statistics.median(cpu), 1)
    return chosen


def _variants(ctx: Context) -> list[tuple[str, str, dict[str, str]]]:
    """(label, server name, extra environment) for every server that runs."""
    out: list[tuple[str, str, dict[str, str]]] = [
        (name, name, {}) for name in servers.ALL if ctx.wanted(name)
    ]
    if any(label == "aioworker" for label, _, _ in out) and not ctx.quick:
        if ctx.avail.observe:
            out[1:1] = [(name, name, {}) for name in servers.SCOREBOARD_AB]
        else:
            ctx.note("scoreboard comparison skipped: aioworker.observe.hook is not there")
    return out


def _start_all(ctx: Context, variants: list[tuple[str, str, dict[str, str]]]) -> dict[str, Server]:
    running: dict[str, Server] = {}
    for label, name, extra_env in variants:
        ctx.progress(f"throughput: starting {label}")
        try:
            running[label] = servers.start(
                name, servers.HELLO_APP, 1, ctx.server_cpus, ctx.avail, extra_env
            )
        except RuntimeError as exc:
            ctx.note(f"{label} failed to start: {str(exc).splitlines()[0]}")
            continue
        ctx.record_memory(label, "idle", running[label])
    return running


def _measure(ctx: Context, label: str, server: Server, mode: str, seconds: float) -> dict[str, Any]:
    path, conns, depth, upload = MODES[mode]
    url = f"http://127.0.0.1:{server.ports[0]}{path}"
    before = server.cpu_seconds()
    result = ctx.load(Load(url, conns, seconds, depth, upload))
    result["cpu_us_per_req"] = cpu_us_per_request(server.cpu_seconds() - before, result["requests"])
    lat = result["latency_ms"]
    # Pipelined latency is one figure per batch of 16: not shown.
    shown = "" if depth > 1 else f"p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
    ctx.progress(
        f"  {label:<24} {mode:<9} {result['rps']:>10,.0f} req/s  {shown}"
        f"cpu {result['cpu_us_per_req']} us/req  failed {result['failed']}"
    )
    return result


def run(ctx: Context) -> dict[str, Any]:
    """Every server runs at once (idle ones cost nothing) and they take turns under load, one
    short run each per round: a noisy neighbour on a shared machine then spreads over all of
    them instead of landing on one, and each figure is the run with the median req/s."""
    plan = _plan(ctx)
    running = _start_all(ctx, _variants(ctx))
    collected: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        if plan.warm_s:
            ctx.progress("throughput: warming up")
            warm = ["/"] + ([MODES["fastapi"][0]] if FASTAPI is not None else [])
            for server in running.values():
                for path in warm:  # FastAPI builds its validators on a route's first requests
                    ctx.load(Load(f"http://127.0.0.1:{server.ports[0]}{path}", 64, plan.warm_s))
        schedule = [("hello", plan.hello_rounds, plan.hello_s)]
        schedule += [(mode, plan.other_rounds, plan.other_s) for mode in MODES if mode != "hello"]
        if FASTAPI is None:
            ctx.note(
                "throughput: FastAPI is not installed (the bench extra has it): no fastapi row"
            )
            schedule = [step for step in schedule if step[0] != "fastapi"]
        for mode, rounds, seconds in schedule:
            for round_no in range(rounds):
                ctx.progress(f"throughput: {mode}, round {round_no + 1}/{rounds}")
                for label, server in running.items():
                    if mode != "hello" and (
                        label in servers.SCOREBOARD_AB
                        or (ctx.quick and label not in QUICK_ALL_MODES)
                    ):
                        continue
                    if mode in NOT_FOR_CEILING and label == "ceiling":
                        continue
                    if label == "floor" and mode not in FLOOR_MODES:
                        continue
                    result = _measure(ctx, label, server, mode, seconds)
                    collected.setdefault(label, {}).setdefault(mode, []).append(result)
        for label, server in running.items():
            ctx.record_memory(label, "after throughput", server)
    finally:
        for label, server in running.items():
            ctx.stop(server, label)
    table = {
        label: {mode: _median(rs) for mode, rs in modes.items()}
        for label, modes in collected.items()
    }
    return {
        "servers": table,
        "ratios": ratios(table),
        "versus": versus(collected),
        "plan": asdict(plan),
    }


# Whom aioworker is compared with, round by round (benchmarks/ratios.py).
RIVALS = ("uvicorn", "granian", "floor", "ceiling")


def versus(collected: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """mode -> rival -> aioworker's req/s over the rival's, per round: median, low, high."""
    ours = collected.get("aioworker", {})
    out: dict[str, Any] = {}
    for mode, runs in ours.items():
        row = {}
        for rival in RIVALS:
            theirs = collected.get(rival, {}).get(mode)
            if theirs:
                spread = ratio_spread([r["rps"] for r in runs], [r["rps"] for r in theirs])
                if spread:
                    row[rival] = spread
        if row:
            out[mode] = row
    return out


def ratios(table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each server's req/s as a share of the ceiling's; aioworker's as a multiple of uvicorn's."""
    out: dict[str, Any] = {}
    for mode in MODES:
        row: dict[str, float] = {}
        ceiling = table.get("ceiling", {}).get(mode, {}).get("rps")
        uvicorn = table.get("uvicorn", {}).get(mode, {}).get("rps")
        ours = table.get("aioworker", {}).get(mode, {}).get("rps")
        if ours and uvicorn:
            row["aioworker_vs_uvicorn"] = round(ours / uvicorn, 2)
        if ceiling:
            for label, modes in table.items():
                if mode in modes and label != "ceiling":
                    row[f"{label}_share_of_ceiling"] = round(modes[mode]["rps"] / ceiling, 3)
        if row:
            out[mode] = row
    return out
