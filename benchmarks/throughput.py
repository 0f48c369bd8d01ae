"""Scenario 1, throughput: one worker per server, hello world, pipelining, big bodies, uploads.

Servers take turns within each round, so a noisy neighbour on a shared machine spreads over
all of them instead of landing on one; each figure is the round with the median req/s.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks import servers
from benchmarks.context import Context
from benchmarks.wrk import Load

# mode -> (path, connections, pipeline depth, upload bytes)
MODES: dict[str, tuple[str, int, int, int]] = {
    "hello": ("/", 64, 1, 0),
    "pipelined": ("/", 64, 16, 0),
    "64k": ("/bytes/65536", 64, 1, 0),
    "1m": ("/bytes/1048576", 16, 1, 0),
    "upload": ("/upload", 16, 1, 1048576),
}
QUICK_ALL_MODES = ("aioworker", "uvicorn", "ceiling")  # --quick runs the other modes only here


def _plan(ctx: Context) -> tuple[int, float, float, float]:
    """(rounds, hello seconds, other modes' seconds, warm-up seconds)."""
    if ctx.quick:
        return 1, 2.0, 1.0, 0.0
    return 3, 5.0, 5.0, 1.0


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
    return chosen


def _variants(ctx: Context) -> list[tuple[str, str, dict[str, str]]]:
    """(label, server name, extra environment) for every server that runs."""
    out: list[tuple[str, str, dict[str, str]]] = [
        (name, name, {}) for name in servers.ALL if ctx.wanted(name)
    ]
    if any(label == "aioworker" for label, _, _ in out) and ctx.avail.scoreboard_off_env:
        out.insert(1, ("aioworker-noscoreboard", "aioworker", dict(ctx.avail.scoreboard_off_env)))
    return out


def run(ctx: Context) -> dict[str, Any]:
    rounds, hello_s, other_s, warm_s = _plan(ctx)
    variants = _variants(ctx)
    collected: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_no in range(rounds):
        for label, name, extra_env in variants:
            ctx.progress(f"throughput round {round_no + 1}/{rounds}: starting {label}")
            try:
                server = servers.start(
                    name, servers.HELLO_APP, 1, ctx.server_cpus, ctx.avail, extra_env
                )
            except RuntimeError as exc:
                ctx.note(f"{label} failed to start: {str(exc).splitlines()[0]}")
                continue
            base = f"http://127.0.0.1:{server.ports[0]}"
            try:
                if round_no == 0:
                    ctx.record_memory(label, "idle", server)
                if warm_s:
                    ctx.load(Load(base + "/", 64, warm_s))
                modes = ["hello"]
                if round_no == 0 and (not ctx.quick or name in QUICK_ALL_MODES):
                    modes = list(MODES)
                for mode in modes:
                    path, conns, depth, upload = MODES[mode]
                    seconds = hello_s if mode == "hello" else other_s
                    result = ctx.load(Load(base + path, conns, seconds, depth, upload))
                    collected.setdefault(label, {}).setdefault(mode, []).append(result)
                    lat = result["latency_ms"]
                    # Pipelined latency is one figure per batch of 16: not shown.
                    shown = (
                        "" if depth > 1 else (f"p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  ")
                    )
                    ctx.progress(
                        f"  {label:<24} {mode:<9} {result['rps']:>10,.0f} req/s  {shown}"
                        f"failed {result['failed']}"
                    )
                if round_no == 0:
                    ctx.record_memory(label, "after throughput", server)
            finally:
                server.stop()
    table = {
        label: {mode: _median(rs) for mode, rs in modes.items()}
        for label, modes in collected.items()
    }
    return {
        "servers": table,
        "ratios": ratios(table),
        "rounds": rounds,
        "seconds": {"hello": hello_s, "other": other_s, "warmup": warm_s},
    }


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
