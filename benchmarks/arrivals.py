"""Open-loop client: one fresh connection per request, each sent when it is due; one latency each.

The load generators keep connections alive and send again when an answer arrives (closed loop).
The `blocked` and `mixed` scenarios need arrivals instead: each request comes at its scheduled
time whether the earlier ones were answered or not, on a new connection (`Connection: close`),
so the server decides afresh where it goes. The latency of a request runs from the moment its
connection is opened to the end of its answer; how late the client itself started a request
(its own loop delay) is reported apart as `late_ms_max`.

Optionally a "hold" request goes first (e.g. `/task/sleep?seconds=6`, which blocks the worker
that takes it) and the schedule starts only once that call is in progress: the server's end of
the connection is accepted and read (/proc/net/tcp: an inode, no unread bytes), and the process
among `pids` that holds it sleeps in the kernel (/proc/PID/wchan). That pid is reported as the
hold's "worker", so each answer's pid (the example app's /info names it) tells whether the
blocked worker served it.

The plan comes as JSON on stdin, the result goes as JSON to stdout:

    {"port": 8000, "hold": "/task/sleep?seconds=6", "pids": [101, 102],
     "arrivals": [[0.0, "/info"], [0.02, "/info"]], "timeout": 40}
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import uvloop

from benchmarks.procs import affinity, holder, server_end, wchan

HOST = "127.0.0.1"
HOLD_READY_TIMEOUT = 10.0
# Where a process waits inside time.sleep (clock_nanosleep); an idle event loop shows do_epoll_wait.
SLEEPING = "hrtimer_nanosleep"


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def _answer(path: str, started: float, data: bytes) -> dict[str, Any]:
    """One request's record from the bytes the server sent before closing."""
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pid = None
    if body.startswith(b"{"):  # the example app's /info names the worker that answered
        try:
            pid = json.loads(body).get("pid")
        except ValueError:
            pid = None
    return {
        "path": path,
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "pid": pid,
    }


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, started: float
) -> dict[str, Any]:
    try:
        writer.write(_request(path))
        data = await reader.read()  # Connection: close, so the answer ends at EOF
    finally:
        writer.close()
    return _answer(path, started, data)


async def _connect_and_exchange(port: int, path: str, started: float) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    return await _exchange(reader, writer, path, started)


async def fetch(port: int, path: str, timeout: float) -> dict[str, Any]:
    """One request on a fresh connection; status 0 and an error kind when it gets no answer."""
    started = time.perf_counter()
    try:
        return await asyncio.wait_for(_connect_and_exchange(port, path, started), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return {
            "path": path,
            "status": 0,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "pid": None,
            "error": "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__,
        }


async def _hold(
    port: int, path: str, pids: list[int], timeout: float
) -> tuple[asyncio.Task[dict[str, Any]], dict[str, Any]]:
    """Send the hold request; return its pending answer once the worker that took it sleeps."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, port)
    client_port = writer.get_extra_info("sockname")[1]
    answer = asyncio.ensure_future(
        asyncio.wait_for(_exchange(reader, writer, path, started), timeout)
    )
    deadline = started + HOLD_READY_TIMEOUT
    pid = 0
    while not pid or wchan(pid) != SLEEPING:
        if not pid:
            end = server_end(port, client_port)
            # Accepted (an inode) and read (nothing unread): find the process that holds it.
            if end is not None and end[0] and not end[1]:
                pid = holder(end[0], pids)
        if answer.done() or time.perf_counter() > deadline:
            answer.cancel()
            raise RuntimeError(f"no worker among {pids} was seen sleeping in {path}")
        await asyncio.sleep(0.001)  # polling interval of the readiness probe
    return answer, {"ready_ms": round((time.perf_counter() - started) * 1000, 3), "worker": pid}


async def run_plan(plan: dict[str, Any]) -> dict[str, Any]:
    port, timeout = int(plan["port"]), float(plan.get("timeout", 30.0))
    hold: dict[str, Any] | None = None
    held: asyncio.Task[dict[str, Any]] | None = None
    if plan.get("hold"):
        held, hold = await _hold(port, plan["hold"], list(plan.get("pids", [])), timeout)
    loop = asyncio.get_running_loop()
    start = loop.time()
    late = 0.0
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    for at, path, *to in plan["arrivals"]:  # an arrival may name its own port: [at, path, port]
        delay = start + float(at) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late = max(late, loop.time() - start - float(at))
        tasks.append(asyncio.ensure_future(fetch(int(to[0]) if to else port, path, timeout)))
    requests = await asyncio.gather(*tasks)
    for at_path, record in zip(plan["arrivals"], requests, strict=True):
        record["at"] = at_path[0]
    if held is not None and hold is not None:
        hold.update(await held)
    return {"hold": hold, "requests": requests, "late_ms_max": round(late * 1000, 3)}


def start(plan: dict[str, Any], cpus: set[int] | None) -> tuple[subprocess.Popen[str], str]:
    """Start a client process for `plan`, pinned to `cpus` (the load generator's)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.arrivals"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=affinity(cpus),
    )
    return proc, json.dumps(plan)


def finish(started: tuple[subprocess.Popen[str], str], timeout: float) -> dict[str, Any]:
    """The result of a client process from `start`."""
    proc, plan = started
    try:
        out, err = proc.communicate(plan, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"arrivals client failed:\n{err[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def run(plan: dict[str, Any], cpus: set[int] | None) -> dict[str, Any]:
    """Run `plan` in a client process pinned to `cpus` (the load generator's); its result."""
    return finish(start(plan, cpus), float(plan.get("timeout", 30.0)) + 120)


def together(plans: list[dict[str, Any]], cpus: set[int] | None) -> list[dict[str, Any]]:
    """Run the plans at the same time, each in its own client process (as separate users would
    send them: one client's work on its own connections does not delay another's)."""
    started = [start(plan, cpus) for plan in plans]
    timeout = max(float(plan.get("timeout", 30.0)) for plan in plans) + 120
    return [finish(one, timeout) for one in started]


def main() -> None:
    result = uvloop.run(run_plan(json.load(sys.stdin)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
