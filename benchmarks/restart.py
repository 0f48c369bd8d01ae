"""Scenario 3, reload and crash under load: requests that fail while workers are replaced.

Each server runs the hello-world app with 2 workers under a steady keep-alive load
(wrk or the built-in generator, 16 connections). Two phases, each with its own load run:

    reload   SIGHUP to the master/supervisor, RELOADS times; each time we wait until every old
             worker pid is gone, the expected number of workers runs and / answers 200.
             aioworker: its rolling reload. gunicorn: its HUP (new workers, old ones stopped
             gracefully). uvicorn --workers: its supervisor's HUP (restart_all: start a new
             process, wait until it is ready, SIGTERM the old one, one worker at a time).
    kill9    SIGKILL to the worker holding the most load connections; we wait until a
             replacement runs and / answers 200.
             Every one of the three respawns a dead worker by itself.

The load comes from the built-in generator even when wrk is installed: throughput is not the
point here, and it tells apart, among the failures, requests that met a reused keep-alive
connection closed before any byte of the answer ("unanswered"): in a graceful reload the
server never read them, and HTTP clients (browsers, httpx, urllib3) resend those by
themselves. A failed request is any error it counts: refused or reset connections, a
connection closed with a request in flight, a 4xx/5xx status, or a timeout.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.context import Context
from benchmarks.procs import Server, connections_held, established, free_port, http_get
from benchmarks.wrk import Load, LoadRun

WORKERS = 2
CONNECTIONS = 16
RELOADS = 10
WAIT = 60.0

HOW = {
    "aioworker": "aioworker start -c (one group, 2 workers); kill -HUP master; "
    "kill -9 the busiest worker",
    "gunicorn": "gunicorn -k uvicorn_worker.UvicornWorker -w 2; kill -HUP master; "
    "kill -9 the busiest worker",
    "uvicorn": "uvicorn --workers 2; kill -HUP supervisor (its restart_all: one worker at a "
    "time, new one ready before the old one gets SIGTERM); kill -9 the busiest worker",
}


def _wait_replaced(server: Server, old: set[int], port: int) -> float:
    """Seconds until no pid of `old` serves, WORKERS workers run and the port answers 200."""
    start = time.monotonic()
    while True:
        current = set(server.workers())
        if not current & old and len(current) >= WORKERS and http_get(port) == 200:
            return time.monotonic() - start
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited during the restart:\n{server.log_tail()}")
        if time.monotonic() - start > WAIT:
            raise RuntimeError(f"{server.name}: workers {sorted(old)} not replaced in {WAIT}s")
        time.sleep(0.02)  # polling interval of the readiness probe


def _wait_flowing(server: Server, port: int) -> None:
    """Until every load connection is established, so the event hits connections in use."""
    start = time.monotonic()
    while established(port) < CONNECTIONS:
        if time.monotonic() - start > WAIT:
            raise RuntimeError(f"{server.name}: the load never connected")
        time.sleep(0.01)  # polling interval of the readiness probe


def _start(ctx: Context, name: str, tmp: Path) -> Server:
    if name == "aioworker":
        port = free_port()
        config = servers.aioworker_config(tmp, {"web": (port, WORKERS, ["/"])}, servers.HELLO_APP)
        return servers.start_master(config, [port], WORKERS, ctx.server_cpus)
    return servers.start(name, servers.HELLO_APP, WORKERS, ctx.server_cpus, ctx.avail)


def _phase(ctx: Context, server: Server, reloads: int) -> dict[str, Any]:
    port = server.ports[0]
    # The built-in generator here: it tells apart the failures clients retry by themselves.
    load = Load(f"http://127.0.0.1:{port}/", CONNECTIONS, 3600, timeout=10)
    run: LoadRun = ctx.start_load(load, builtin=True)
    took: list[float] = []
    try:
        _wait_flowing(server, port)
        if reloads:
            for _ in range(reloads):
                old = set(server.workers())
                server.signal(signal.SIGHUP)
                took.append(round(_wait_replaced(server, old, port), 2))
        else:
            # The busiest worker, so the figure does not depend on which one the kernel favoured.
            victim = max(server.workers(), key=lambda pid: connections_held(pid, port))
            os.kill(victim, signal.SIGKILL)
            took.append(round(_wait_replaced(server, {victim}, port), 2))
    finally:
        run.stop()
        result = run.result()
    result["events"] = reloads or 1
    result["recovery_s"] = took
    return result


def run(ctx: Context) -> dict[str, Any]:
    reloads = 2 if ctx.quick else RELOADS
    out: dict[str, Any] = {}
    for name in ("aioworker", "gunicorn", "uvicorn"):
        if not ctx.wanted(name):
            continue
        if name == "aioworker" and not ctx.avail.aioworker_start:
            ctx.note("restart: aioworker needs `aioworker start -c`, not there yet")
            continue
        ctx.progress(f"restart: {HOW[name]}")
        with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
            try:
                server = _start(ctx, name, Path(tmp))
            except RuntimeError as exc:
                ctx.note(f"restart {name} failed to start: {str(exc).splitlines()[0]}")
                continue
            try:
                entry: dict[str, Any] = {"how": HOW[name]}
                label = f"{name} x{WORKERS}"
                ctx.record_memory(label, "idle", server)
                for phase, count in (("reload", reloads), ("kill9", 0)):
                    result = entry[phase] = _phase(ctx, server, count)
                    ctx.progress(
                        f"  {name:<10} {phase:<7} failed {result['failed']} of "
                        f"{result['requests']:,} requests {result['errors']}, "
                        f"unanswered {result['unanswered_reused']}; "
                        f"recovery {result['recovery_s']} s"
                    )
                    if phase == "reload":
                        # Measured here: after kill -9 the newest worker may still be starting.
                        ctx.record_memory(label, "after restart", server)
                out[name] = entry
            except RuntimeError as exc:
                ctx.note(f"restart {name}: {str(exc).splitlines()[0]}")
            finally:
                ctx.stop(server)
    return {"servers": out, "reloads": reloads, "connections": CONNECTIONS, "workers": WORKERS}
