"""`python -m benchmarks.profile`: where one hello-world request's time goes inside aioworker.

Two measurements of one engine serving benchmarks/apps.py in a child process, driven by a
client in this process (asyncio streams; 16 keep-alive connections, one request at a time each):

- instructions per request, counted by `valgrind --tool=callgrind`: the child serves N1, then
  (another child) N2 requests; (I2 - I1) / (N2 - N1) cancels start-up and shutdown. Counted
  instructions do not depend on what else runs on the machine, so a change to the hot path
  shows as a repeatable number where req/s moves by 10% between runs on a shared machine.
- the share of each part of the engine (parsing, scope building, task creation, send path,
  accounting, ...) in the Python-level time, from cProfile (its own overhead inflates small
  functions, so read the shares, not the absolute microseconds).

`--publish` adds the figures to docs/benchmarks.json under "profile" and renders the page again
(benchmarks/page.py); nothing else in that file changes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

from aioworker._types import ASGIApp
from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
CONNECTIONS = 16

# (path fragment or "~" for a builtin, function name or "" for any) -> part of the engine.
# First match wins; what matches nothing is "event loop and other".
PARTS: tuple[tuple[str, str, str], ...] = (
    ("aioworker/http/parser.py", "", "parsing (httptools callbacks, RequestHead)"),
    ("~", "feed_data", "parsing (httptools callbacks, RequestHead)"),
    ("aioworker/http/cycle.py", "_scope", "scope and cycle building"),
    ("aioworker/http/cycle.py", "__init__", "scope and cycle building"),
    ("~", "copy", "scope and cycle building"),
    ("~", "create_task", "task creation and app start"),
    ("aioworker/http/cycle.py", "begin", "task creation and app start"),
    ("aioworker/http/cycle.py", "run", "task creation and app start"),
    ("aioworker/http/cycle.py", "_account", "accounting (counters, clock)"),
    ("aioworker/http/counters.py", "", "accounting (counters, clock)"),
    ("~", "monotonic", "accounting (counters, clock)"),
    ("~", "bisect_left", "accounting (counters, clock)"),
    ("aioworker/http/framing.py", "", "send path (framing, head, write)"),
    ("aioworker/http/response.py", "", "send path (framing, head, write)"),
    ("aioworker/http/connection.py", "write", "send path (framing, head, write)"),
    ("~", "write", "send path (framing, head, write)"),
    ("~", "join", "send path (framing, head, write)"),
    ("aioworker/http/connection.py", "", "connection (data_received, keep-alive)"),
    ("aioworker/http/cycle.py", "", "connection (data_received, keep-alive)"),
    ("benchmarks/apps.py", "", "the app"),
)
OTHER = "event loop and other"


def part_of(filename: str, function: str) -> str:
    """Which part of the engine a cProfile entry belongs to (PARTS)."""
    for fragment, name, part in PARTS:
        if fragment == "~":  # a builtin: cProfile names it like "<method 'write' of ...>"
            if filename == "~" and name in function:
                return part
        elif filename.endswith(fragment) and (not name or name == function):
            return part
    return OTHER


# -- the child: one engine that stops after N requests ------------------------------------


async def _serve(requests: int, profile_to: str) -> None:
    from aioworker.http.server import start_server
    from benchmarks.apps import app

    server = await start_server(cast(ASGIApp, app), host="127.0.0.1", port=0, lifespan="off")
    print(server.sockets[0].getsockname()[1], flush=True)
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    # Polled, not signalled: 50 ms is a few hundred instructions per poll against millions.
    while server.state.requests < requests:
        await asyncio.sleep(0.05)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    server.close()
    await server.wait_closed()


def child(requests: int, loop: str, profile_to: str) -> None:
    from aioworker.http.server import new_event_loop

    factory = new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(requests, profile_to))


# -- the client: this process -------------------------------------------------------------


async def _one_connection(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
    writer.close()


async def _drive(port: int, requests: int) -> None:
    share, extra = divmod(requests, CONNECTIONS)
    await asyncio.gather(*(_one_connection(port, share + (i < extra)) for i in range(CONNECTIONS)))


def serve_and_drive(
    requests: int, loop: str, *, wrapper: tuple[str, ...] = (), profile_to: str = ""
) -> None:
    """Start a child engine (under `wrapper`, e.g. valgrind), send it `requests`, wait for it."""
    argv = [*wrapper, sys.executable, "-m", "benchmarks.profile", "--child", str(requests)]
    argv += ["--loop", loop, *(["--cprofile", profile_to] if profile_to else [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the profiled engine did not start: {line!r}")
        asyncio.run(_drive(int(line), requests))
        if proc.wait(600) != 0:
            raise RuntimeError(f"the profiled engine exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# -- the measurements ---------------------------------------------------------------------


# Shared objects the engine's instructions run in -> what to call them (first match wins).
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("libpython", "Python interpreter (bytecode, objects, memory)"),
    ("/Python-3.", "Python interpreter (bytecode, objects, memory)"),
    ("uvloop/", "uvloop and libuv"),
    ("httptools/", "httptools and llhttp"),
    ("_asyncio.", "asyncio's C part (futures, tasks)"),
    ("libc.so", "libc (memcpy, malloc, syscall wrappers)"),
)
# "count (share)  file:function [shared object]"; functions inlined from a header have no
# [object]: their source path names the library instead (Python's Include/ directory).
_ANNOTATED = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[(.*)\])?\s*$")


def library_of(shared_object: str) -> str:
    return next((name for key, name in LIBRARIES if key in shared_object), "other")


def callgrind_by_library(annotated: str) -> dict[str, int]:
    """Instructions per library from `callgrind_annotate --threshold=100` output (one line
    per function: count, share, file:function [shared object])."""
    totals: dict[str, int] = {}
    for line in annotated.splitlines():
        match = _ANNOTATED.match(line)
        if match and "PROGRAM TOTALS" not in line:
            library = library_of(match.group(3) or match.group(2))
            totals[library] = totals.get(library, 0) + int(match.group(1).replace(",", ""))
    return totals


def instructions_per_request(loop: str, low: int = 1000, high: int = 3000) -> dict[str, Any]:
    """Instructions the engine process executes per request, start-up cancelled out: the total
    and by library (the kernel's share, the system calls themselves, is not counted)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        for n in (low, high):
            out = Path(tmp) / f"callgrind.{n}"
            wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q")
            serve_and_drive(n, loop, wrapper=wrapper)
            annotated = subprocess.run(
                ["callgrind_annotate", "--threshold=100", str(out)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(callgrind_by_library(annotated))
    per = {
        library: round((runs[1].get(library, 0) - runs[0].get(library, 0)) / (high - low))
        for library in runs[1]
    }
    return {
        "total": sum(per.values()),
        "libraries": dict(sorted(per.items(), key=lambda kv: -kv[1])),
    }


def python_profile(loop: str, requests: int = 20000) -> dict[str, Any]:
    """Shares of cProfile's own time per part of the engine, and the costliest functions."""
    with tempfile.TemporaryDirectory(prefix="bench-cprofile-") as tmp:
        out = str(Path(tmp) / "engine.prof")
        serve_and_drive(requests, loop, profile_to=out)
        stats = pstats.Stats(out).stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    functions: list[tuple[float, int, str]] = []
    total = 0.0
    for (filename, line, function), (_, calls, own, _, _) in stats.items():
        part = part_of(filename, function)
        parts[part] = parts.get(part, 0.0) + own
        total += own
        where = function if filename == "~" else f"{_short(filename)}:{line} {function}"
        functions.append((own, calls, where))
    functions.sort(reverse=True)
    return {
        "requests": requests,
        "parts": {
            part: round(100 * own / total, 1)
            for part, own in sorted(parts.items(), key=lambda kv: -kv[1])
        },
        "top": [
            {
                "function": where,
                "share_pct": round(100 * own / total, 1),
                "calls_per_request": round(calls / requests, 2),
            }
            for own, calls, where in functions[:15]
        ],
    }


def _short(filename: str) -> str:
    for marker in ("aioworker/", "benchmarks/", "asyncio/"):
        if marker in filename:
            return marker + filename.rsplit(marker, 1)[1]
    return Path(filename).name


def measure(loops: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": "python -m benchmarks.profile",
        "revision": report.revision(),
        "python": sys.version.split()[0],
    }
    if shutil.which("valgrind"):
        result["instructions_per_request"] = {
            loop: instructions_per_request(loop) for loop in loops
        }
    result["cprofile"] = python_profile("uvloop")
    return result


def profile_md(data: dict[str, Any]) -> list[str]:
    """The profile section of the benchmark page."""
    lines = [
        "### Where a hello-world request goes (aioworker alone)",
        "",
        f"From `{data['command']}` at revision {data['revision']}, Python {data['python']}: one "
        f"engine serving `benchmarks/apps.py`, {CONNECTIONS} keep-alive connections.",
        "",
    ]
    counts = data.get("instructions_per_request")
    if counts:
        lines += [
            "Instructions per request (callgrind; the same on a busy machine): "
            + ", ".join(f"{loop} {c['total']:,}" for loop, c in counts.items())
            + ". By library (system calls themselves, in the kernel, are not counted):",
            "",
            "| library | " + " | ".join(counts) + " |",
            "|---|" + "--:|" * len(counts),
        ]
        libraries = list(next(iter(counts.values()))["libraries"])
        for library in libraries:
            cells = [f"{c['libraries'].get(library, 0):,}" for c in counts.values()]
            lines.append(f"| {library} | " + " | ".join(cells) + " |")
        lines.append("")
    profile = data["cprofile"]
    lines += [
        "`connection.write` includes uvloop's `transport.write`, the send system call itself: "
        "cProfile sees uvloop's and the Task's C code only through the Python function that "
        "calls it. The event loop's own C code (epoll, reading) is not in these shares. They "
        "are shares of elapsed time: on a busy machine the system call's share grows (19% to "
        "45% between two runs here), so compare the other rows with each other, and changes "
        "by the instruction counts.",
        "",
        f"Share of the Python-level time per part (cProfile, {profile['requests']:,} requests, "
        "uvloop):",
        "",
        "| part | share |",
        "|---|--:|",
        *[f"| {part} | {share:.1f}% |" for part, share in profile["parts"].items()],
        "",
        "| costliest functions (own time) | share | calls per request |",
        "|---|--:|--:|",
        *[
            f"| `{f['function']}` | {f['share_pct']:.1f}% | {f['calls_per_request']:g} |"
            for f in profile["top"]
        ],
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--child", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), action="append")
    parser.add_argument("--count-only", action="store_true", help="callgrind instructions only")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="add the figures to docs/benchmarks.json and the page",
    )
    args = parser.parse_args(argv)
    loops = tuple(args.loop or ("uvloop", "asyncio"))
    if args.child is not None:
        child(args.child, loops[0], args.cprofile)
        return 0
    if args.count_only:
        for loop in loops:
            counted = instructions_per_request(loop)
            print(f"{loop}: {counted['total']:,} instructions per request")
            for library, n in counted["libraries"].items():
                print(f"  {library}: {n:,}")
        return 0
    data = measure(loops)
    print("\n".join(profile_md(data)))
    if args.publish:
        from benchmarks import page  # which renders profile_md: imported here, not at the top

        results = json.loads(page.DATA.read_text())
        results["profile"] = data
        for path in page.publish(results):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
