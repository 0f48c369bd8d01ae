"""The websocket scenario: idle memory per WebSocket and echo throughput, aioworker vs the rest.

`python -m benchmarks.websocket [--quick] [--idle N] [--rounds R]` runs, for each server with
one worker (aioworker, uvicorn with its `websockets`, `websockets-sansio` and `wsproto`
implementations, granian), in the same run and on the same pinning as the other scenarios
(server on the first CPUs, the load generator on the last):

- idle: N WebSockets opened and left idle; (worker RSS after - before) / N;
- small: 50 connections, each echoing 16-byte binary messages one at a time, messages/s;
- large: 4 connections echoing 1 MiB binary messages, messages/s.

`--deflate` offers permessage-deflate in every handshake, as browsers do, and measures only the
idle memory (the servers that agree keep zlib state per connection).

The load generator is this module's `client` mode in its own process: raw frames with a zero
mask key (legal, and it keeps the client's cost out of the figure) and no extension offered,
so no server compresses. Each figure is the median of `--rounds` runs; the machine is shared,
so compare servers within one run, never across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

from benchmarks.procs import Server, affinity, cpu_split, free_port
from benchmarks.servers import PY, ROOT, Availability, command, env

APP = "benchmarks.apps:app"
_KEY = base64.b64encode(b"benchmark-key-16").decode()
SERVERS = (
    "aioworker",
    "uvicorn-websockets",
    "uvicorn-websockets-sansio",
    "uvicorn-wsproto",
    "granian",
)


# -- the load generator (runs in its own process) ---------------------------------------------


def _frame(size: int) -> bytes:
    """A masked binary client frame of `size` bytes with the all-zero mask key."""
    if size < 126:
        head = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    return head + b"\0\0\0\0" + b"x" * size


def _echo_size(size: int) -> int:
    """Bytes of the server's unmasked echo frame."""
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


async def _open(
    port: int, deflate: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    # What browsers offer; a server that agrees keeps zlib state for the connection's life.
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\n"
            f"{offer if deflate else ''}Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"handshake refused: {head[:200]!r}")
    return reader, writer


async def _idle(port: int, count: int, deflate: bool) -> None:
    held = []
    for start in range(0, count, 200):  # batches: a burst of 10,000 SYNs overflows backlogs
        batch = range(start, min(count, start + 200))
        held += await asyncio.gather(*(_open(port, deflate) for _ in batch))
    print("OPEN", len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, writer in held:
        writer.close()


async def _echo(port: int, connections: int, size: int, seconds: float) -> None:
    frame, expect = _frame(size), _echo_size(size)
    counts = [0] * connections
    stop = False

    async def one(i: int) -> None:
        reader, writer = await _open(port)
        while not stop:
            writer.write(frame)
            await reader.readexactly(expect)
            counts[i] += 1
        writer.close()

    tasks = [asyncio.create_task(one(i)) for i in range(connections)]
    await asyncio.sleep(1.0)  # warm-up: connections open, caches and the JIT-less loop settle
    first, started = sum(counts), time.perf_counter()
    await asyncio.sleep(seconds)
    done, elapsed = sum(counts) - first, time.perf_counter() - started
    stop = True
    await asyncio.wait(tasks, timeout=10)
    print(json.dumps({"messages": done, "seconds": elapsed}), flush=True)


def client_main(argv: list[str]) -> None:
    import uvloop

    mode, port = argv[0], int(argv[1])
    if mode == "idle":
        uvloop.run(_idle(port, int(argv[2]), argv[3:4] == ["deflate"]))
    else:
        uvloop.run(_echo(port, int(argv[2]), int(argv[3]), float(argv[4])))


# -- the scenario -------------------------------------------------------------------------------


def _server_argv(name: str, port: int, avail: Availability) -> list[str]:
    if name == "aioworker":
        argv = command("aioworker", APP, port, 1, avail)
        # One client address holds every idle connection: lift the per-client and total caps.
        return [*argv, "--max-connections", "20000", "--max-connections-per-client", "0"]
    if name.startswith("uvicorn-"):
        impl = name.removeprefix("uvicorn-")
        return [*command("uvicorn", APP, port, 1, avail), "--ws", impl, "--backlog", "4096"]
    return [*command("granian", APP, port, 1, avail), "--backlog", "4096"]


def _client(args: list[str], cpus: set[int] | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "benchmarks.websocket", "client", *args],
        cwd=ROOT,
        env=env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=affinity(cpus),
    )


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def _idle_run(server: Server, port: int, count: int, cpus: set[int] | None, deflate: bool) -> float:
    before = _rss_kib(server.workers())
    proc = _client(["idle", str(port), str(count), "deflate" if deflate else "plain"], cpus)
    assert proc.stdout is not None
    assert proc.stdin is not None
    line = proc.stdout.readline()
    if not line.startswith("OPEN"):
        proc.kill()
        raise RuntimeError(f"idle client failed: {line!r}")
    time.sleep(1.0)  # let the server finish its handshake work before sampling its RSS
    after = _rss_kib(server.workers())
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(60)
    return (after - before) * 1024 / count


def _echo_run(port: int, conns: int, size: int, seconds: float, cpus: set[int] | None) -> float:
    proc = _client(["echo", str(port), str(conns), str(size), str(seconds)], cpus)
    out, _ = proc.communicate(timeout=seconds + 60)
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["messages"]) / float(result["seconds"])


def run(
    quick: bool, idle: int, rounds: int, only: list[str], deflate: bool = False
) -> dict[str, dict[str, Any]]:
    """Each round starts every server afresh, one after the other: RSS never shrinks once a
    process has grown, so a second idle measurement on the same process would read ~0, and
    interleaving the servers spreads the machine's noise over all of them."""
    server_cpus, load_cpus = cpu_split()
    avail = Availability()
    seconds = 3.0 if quick else 8.0
    names = []
    for name in only or SERVERS:
        base = name.split("-", 1)[0]
        if avail.has(base):
            names.append(name)
        else:
            print(f"{name} skipped: {avail.missing[base]}", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {n: {"idle": [], "small": [], "large": []} for n in names}
    for _ in range(rounds):
        for name in names:
            port = free_port()
            argv = _server_argv(name, port, avail)
            server = Server(name, argv, [port], server_cpus, cwd=str(ROOT), env=env())
            try:
                server.wait_ready()
                row = results[name]
                row["idle"].append(_idle_run(server, port, idle, load_cpus, deflate))
                if not deflate:  # compressed echoes would not match the frames counted
                    row["small"].append(_echo_run(port, 50, 16, seconds, load_cpus))
                    row["large"].append(_echo_run(port, 4, 1 << 20, seconds, load_cpus))
                print(f"{name}: {row}", file=sys.stderr, flush=True)
            finally:
                server.stop()
    return results


def markdown(results: dict[str, dict[str, Any]], idle: int) -> str:
    lines = [
        f"| server | idle KiB per WebSocket ({idle:,} open) | small echo msg/s (50 conns, 16 B) "
        "| large echo msg/s (4 conns, 1 MiB) |",
        "|---|---:|---:|---:|",
    ]
    for name, row in results.items():
        lines.append(
            f"| {name} | {statistics.median(row['idle']) / 1024:.1f} "
            f"| {_median(row['small']):,.0f} | {_median(row['large']):,.1f} |"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.websocket")
    parser.add_argument("--quick", action="store_true", help="3 s echo runs instead of 8 s")
    parser.add_argument("--idle", type=int, default=10_000, help="idle WebSockets to open")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (median shown)")
    parser.add_argument("--server", action="append", choices=SERVERS, default=[])
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate as browsers do; measures idle memory only",
    )
    args = parser.parse_args()
    results = run(args.quick, args.idle, args.rounds, args.server, args.deflate)
    print(json.dumps({"results": results, "idle": args.idle, "cpus": os.cpu_count()}, indent=1))
    print(markdown(results, args.idle))


if __name__ == "__main__":
    main()
