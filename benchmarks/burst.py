"""Scenario: a burst of slow requests, a queue-fed group next to today's direct task group.

BURST requests to `/task/sleep?seconds=0.05` (time.sleep: each blocks its worker 50 ms) arrive
at once, each on its own connection, while a fast route (`/info`) gets one request every
FAST_GAP seconds on the web group, from a second client process. Every setup has a web group
of 2 workers for `/` and 2 workers for `/task`:

    queue-fed   [groups.task] queue = true: the web group enqueues /task/... in Redis (a
                redis-server started for the run) and relays the answers
    queue-front the same, with a front group of 1 worker (routes /task, its own port) that
                takes the burst and relays it, as nginx would send /task to it
    direct      [groups.task] listen on its own port: the burst goes straight to it, as the
                nginx front door would send it

Reported per setup: answers by status (0 = no answer), errors (anything but 200), time to drain
(the last burst answer), and the fast route's p50/p99 idle (the same fast arrivals, no burst)
and during the burst.

    python -m benchmarks --only burst
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import arrivals, servers
from benchmarks.context import Context
from benchmarks.loadgen import percentile
from benchmarks.procs import Server, free_port, tree_cpu_seconds
from benchmarks.wrk import Load

WORKERS = 2
BURST = 400
SLOW = "/task/sleep?seconds=0.05"
FAST = "/info"
FAST_GAP = 0.02
INSTANT = "/task/sleep?seconds=0"  # the slow route's handler, answering at once
RELAY_S = 5.0

SETUPS = {
    "queue-fed": "web group (2 workers) enqueues /task in Redis; queue-fed task group, 2 workers",
    "queue-front": "as queue-fed, but a front group (1 worker, routes /task) takes the burst "
    "and enqueues it",
    "direct": "web group (2 workers) for /; task group (2 workers) on its own port for /task",
}


def _redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _pong(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.01)  # polling the real condition (a PONG)
    return proc


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _config(
    directory: Path, web: int, task: int, redis_port: int | None, front: bool = False
) -> Path:
    lines = [
        "[server]",
        f'pid_file = "{directory / "aioworker.pid"}"',
        f'control_socket = "{directory / "aioworker.sock"}"',
        'log_level = "warning"',
        "",
        "[groups.web]",
        f'app = "{servers.EXAMPLE_APP}"',
        f'listen = "http://127.0.0.1:{web}"',
        f"count = {WORKERS}",
        'routes = ["/"]',
        # Waiting relays are requests in progress of the web group.
        "max_requests_in_progress = 2000",
        "",
        *(
            [
                "[groups.front]",
                f'app = "{servers.EXAMPLE_APP}"',
                f'listen = "http://127.0.0.1:{task}"',
                "count = 1",
                'routes = ["/task"]',
                "max_requests_in_progress = 2000",
                "",
            ]
            if front
            else []
        ),
        "[groups.task]",
        f'app = "{servers.EXAMPLE_APP}"',
        f"count = {WORKERS}",
        'routes = ["/task"]',
    ]
    if redis_port is not None:
        lines += ["queue = true", "reply_timeout = 50.0"]
        lines += ["", "[queue]", f'url = "redis://127.0.0.1:{redis_port}/0"']
    else:
        lines += [f'listen = "http://127.0.0.1:{task}"']
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fast_arrivals(seconds: float, port: int) -> list[list[Any]]:
    return [[round(i * FAST_GAP, 4), FAST, port] for i in range(int(seconds / FAST_GAP))]


def _latencies(records: list[dict[str, Any]]) -> dict[str, float]:
    values = sorted(r["latency_ms"] for r in records if r["status"] == 200)
    if not values:
        return {"p50": 0.0, "p99": 0.0}
    return {"p50": round(percentile(values, 0.5), 2), "p99": round(percentile(values, 0.99), 2)}


def _one(ctx: Context, label: str, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-burst-{label}-"))
    web, task = free_port(), free_port()
    front = label == "queue-front"
    redis_port = free_port() if label.startswith("queue") else None
    redis = _redis(redis_port) if redis_port is not None else None
    try:
        config = _config(tmp, web, task, redis_port, front)
        ports = [web] if redis_port is not None and not front else [web, task]
        server = servers.start_master(config, ports, 2 * WORKERS + front, ctx.server_cpus)
        try:
            idle = arrivals.run(
                {"port": web, "arrivals": _fast_arrivals(seconds, web), "timeout": 60},
                ctx.load_cpus,
            )
            slow_port = web if redis_port is not None and not front else task
            # The burst and the fast route come from two client processes: the fast route's
            # latency is then the server's doing, not the burst client's own loop being busy
            # with 400 connections (which, in one process, added up to 100 ms to it).
            slow, fast = arrivals.together(
                [
                    {"port": slow_port, "arrivals": [[0.0, SLOW]] * BURST, "timeout": 90},
                    {"port": web, "arrivals": _fast_arrivals(seconds, web), "timeout": 90},
                ],
                ctx.load_cpus,
            )
            relayed = _relayed(ctx, server, slow_port, redis)
        finally:
            ctx.stop(server, label)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    slow, fast = slow["requests"], fast["requests"]
    statuses = Counter(r["status"] for r in slow)
    return {
        "burst": BURST,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "drain_s": round(max(r["latency_ms"] for r in slow) / 1000, 2),
        "fast_idle_ms": _latencies(idle["requests"]),
        "fast_burst_ms": _latencies(fast),
        "fast_errors": sum(1 for r in fast if r["status"] != 200),
        "relayed": relayed,
    }


def _relayed(
    ctx: Context, server: Server, port: int, redis: subprocess.Popen[bytes] | None
) -> dict[str, float]:
    """A closed-loop load on the slow route with a handler that answers at once: what one
    request costs the setup (req/s; CPU per request of the server's processes and of Redis)."""
    before = (server.cpu_seconds(), tree_cpu_seconds(redis.pid) if redis else 0.0)
    load = ctx.load(Load(f"http://127.0.0.1:{port}{INSTANT}", connections=32, duration=RELAY_S))
    after = (server.cpu_seconds(), tree_cpu_seconds(redis.pid) if redis else 0.0)
    done = max(1.0, load["rps"] * RELAY_S)
    return {
        "rps": load["rps"],
        "server_us": round((after[0] - before[0]) / done * 1e6, 1),
        "redis_us": round((after[1] - before[1]) / done * 1e6, 1),
    }


def run(ctx: Context) -> dict[str, Any]:
    # The burst drains in about BURST * 50 ms / WORKERS = 10 s: the fast route is sampled as long.
    seconds = BURST * 0.05 / WORKERS
    result: dict[str, Any] = {"setups": {}, "described": SETUPS}
    has_redis = bool(shutil.which("redis-server")) or Path("/usr/bin/redis-server").exists()
    if not has_redis:
        ctx.note("burst: redis-server is missing (scripts/install); queue-fed setup skipped")
    for label in SETUPS:
        if label.startswith("queue") and not has_redis:
            continue
        ctx.progress(f"burst: {label}")
        result["setups"][label] = _one(ctx, label, seconds)
    return result


def burst_md(result: dict[str, Any]) -> list[str]:
    """The burst scenario's table."""
    lines = [
        f"### Burst: {BURST} slow requests (50 ms each, blocking) at once, 2 task workers",
        "",
        "| setup | answers by status | errors | time to drain | fast p50 / p99 idle "
        "| fast p50 / p99 during the burst | relayed req/s | CPU us/req: server, redis |",
        "|---|---|---|---|---|---|--:|--:|",
    ]
    for label, r in result["setups"].items():
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        idle, during = r["fast_idle_ms"], r["fast_burst_ms"]
        relayed = r.get("relayed") or {"rps": 0, "server_us": 0, "redis_us": 0}
        lines.append(
            f"| {label} | {statuses} | {r['errors']} | {r['drain_s']} s "
            f"| {idle['p50']} / {idle['p99']} ms | {during['p50']} / {during['p99']} ms "
            f"| {relayed['rps']:,.0f} | {relayed['server_us']}, {relayed['redis_us']} |"
        )
    lines += ["", *[f"- {k}: {v}" for k, v in result["described"].items()]]
    lines += [
        f"- relayed: `{INSTANT}` (a handler that answers at once) under a closed-loop load of "
        f"32 connections for {RELAY_S:.0f} s after the burst, through the same setup: what the "
        "path of one request costs (CPU of the master and every worker, and of redis-server)"
    ]
    return lines
