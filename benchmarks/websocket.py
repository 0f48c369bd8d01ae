"""Scenario websocket: idle memory per WebSocket and echo throughput, aioworker vs the rest.

`python -m benchmarks --only websocket` (also part of a full run and of `--quick`) runs, for each
server with one worker (aioworker, uvicorn with its `websockets`, `websockets-sansio` and
`wsproto` implementations, granian), on the same pinning as the other scenarios (server on the
first CPUs, the load generator on the last):

- idle: N WebSockets opened and left idle; (worker RSS after - before) / N;
- small: 50 connections, each echoing 16-byte binary messages one at a time, messages/s;
- large: 4 connections echoing 1 MiB binary messages, messages/s.

Each round starts every server afresh, one after the other (RSS never shrinks once a process
has grown, so a second idle measurement on the same process would read ~0); aioworker's figures
are compared with each other server's round by round (benchmarks/ratios.py).

`python -m benchmarks.websocket [--quick] [--idle N] [--rounds R] [--deflate]` runs the same
alone; `--deflate` offers permessage-deflate in every handshake, as browsers do, and measures
only the idle memory (the servers that agree keep zlib state per connection).

The load generator is this module's `client` mode in its own process: raw frames with a zero
mask key (legal, and it keeps the client's cost out of the figure) and no extension offered,
so no server compresses. The machine is shared: compare servers within one run, never across
runs.
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
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.context import Context
from benchmarks.procs import Server, affinity, cpu_split, free_port
from benchmarks.ratios import ratio_spread, versus_md
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

# What is measured: key -> (the column on the page, digits shown).
KINDS: dict[str, tuple[str, int]] = {
    "idle_kib": ("idle KiB per WebSocket", 1),
    "small": ("echo msg/s, 16 B (50 conns)", 0),
    "large": ("echo msg/s, 1 MiB (4 conns)", 1),
}


@dataclass(frozen=True)
class Plan:
    idle: int  # WebSockets held open for the memory figure
    rounds: int
    seconds: float  # of each echo run, after a 1 s warm-up
    deflate: bool = False  # offer permessage-deflate: idle memory only


def plan(quick: bool) -> Plan:
    return Plan(idle=1_000, rounds=1, seconds=2.0) if quick else Plan(10_000, 3, 8.0)


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
    """KiB of worker RSS per idle WebSocket."""
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
    return (after - before) / count


def _echo_run(port: int, conns: int, size: int, seconds: float, cpus: set[int] | None) -> float:
    proc = _client(["echo", str(port), str(conns), str(size), str(seconds)], cpus)
    out, _ = proc.communicate(timeout=seconds + 60)
    lines = out.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"echo client failed (exit {proc.returncode}): {out[-200:]!r}")
    result = json.loads(lines[-1])
    return float(result["messages"]) / float(result["seconds"])


def _one_round(ctx: Context, name: str, chosen: Plan) -> dict[str, float]:
    port = free_port()
    argv = _server_argv(name, port, ctx.avail)
    server = Server(name, argv, [port], ctx.server_cpus, cwd=str(ROOT), env=env())
    try:
        server.wait_ready()
        figures = {"idle_kib": _idle_run(server, port, chosen.idle, ctx.load_cpus, chosen.deflate)}
        if not chosen.deflate:  # compressed echoes would not match the frames counted
            figures["small"] = _echo_run(port, 50, 16, chosen.seconds, ctx.load_cpus)
            figures["large"] = _echo_run(port, 4, 1 << 20, chosen.seconds, ctx.load_cpus)
    finally:
        ctx.stop(server, name)
    return figures


def measure(ctx: Context, chosen: Plan, only: tuple[str, ...] = SERVERS) -> dict[str, Any]:
    """Each round starts every server afresh, one after the other: interleaving the servers
    spreads the machine's noise over all of them. A round that fails is a note and a gap."""
    names = [name for name in only if ctx.wanted(name.split("-", 1)[0])]
    runs: dict[str, list[dict[str, float] | None]] = {name: [] for name in names}
    for number in range(1, chosen.rounds + 1):
        ctx.progress(f"websocket: round {number}/{chosen.rounds}")
        for name in names:
            try:
                figures: dict[str, float] | None = _one_round(ctx, name, chosen)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                ctx.note(f"websocket {name}: {str(exc).splitlines()[0]}")
                figures = None
            runs[name].append(figures)
            if figures is not None:
                ctx.progress(
                    f"  {name:<26} " + "  ".join(f"{k} {v:,.1f}" for k, v in figures.items())
                )
    return {"servers": summarise(runs), "versus": versus(runs), "plan": asdict(chosen)}


def run(ctx: Context) -> dict[str, Any]:
    return measure(ctx, plan(ctx.quick))


def _rounds(rounds: list[dict[str, float] | None], kind: str) -> list[float | None]:
    return [None if r is None or kind not in r else r[kind] for r in rounds]


def summarise(runs: dict[str, list[dict[str, float] | None]]) -> dict[str, Any]:
    """server -> each kind's median over the rounds that have it (None if none), and the rounds."""
    out: dict[str, Any] = {}
    for name, rounds in runs.items():
        row: dict[str, Any] = {}
        for kind in KINDS:
            values = [v for v in _rounds(rounds, kind) if v is not None]
            row[kind] = round(statistics.median(values), 1) if values else None
        row["rounds"] = {kind: _rounds(rounds, kind) for kind in KINDS}
        out[name] = row
    return out


def versus(runs: dict[str, list[dict[str, float] | None]]) -> dict[str, Any]:
    """kind -> server -> aioworker's figure over the server's, per round: median, low, high."""
    ours = runs.get("aioworker", [])
    out: dict[str, Any] = {}
    for kind in KINDS:
        row = {}
        for name, theirs in runs.items():
            if name == "aioworker":
                continue
            pairs = [
                (a, b)
                for a, b in zip(_rounds(ours, kind), _rounds(theirs, kind), strict=False)
                if a is not None and b is not None
            ]
            spread = ratio_spread([a for a, _ in pairs], [b for _, b in pairs])
            if spread:
                row[name] = spread
        if row:
            out[kind] = row
    return out


def websocket_md(data: dict[str, Any]) -> list[str]:
    chosen = data["plan"]
    rounds = f"{chosen['rounds']} round" + ("s" if chosen["rounds"] != 1 else "")
    lines = [
        f"### WebSockets: one worker each, {chosen['idle']:,} idle WebSockets, echo runs of "
        f"{chosen['seconds']:g} s; median of {rounds}, each server started afresh for each",
        "",
        "| server | " + " | ".join(label for label, _ in KINDS.values()) + " |",
        "|---|" + "--:|" * len(KINDS),
    ]
    for name, row in data["servers"].items():
        cells = [
            "-" if row[kind] is None else f"{row[kind]:,.{digits}f}"
            for kind, (_, digits) in KINDS.items()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    labelled = {KINDS[kind][0]: row for kind, row in data["versus"].items()}
    if labelled:
        lines += versus_md(labelled, what="figure", column="measure")
        lines += ["", "For idle memory, below 1x means aioworker holds less per WebSocket."]
    return lines


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        client_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.websocket")
    parser.add_argument("--quick", action="store_true", help="the settings of --quick")
    parser.add_argument("--idle", type=int, help="idle WebSockets to open")
    parser.add_argument("--rounds", type=int, help="runs per figure (median shown)")
    parser.add_argument("--server", action="append", choices=SERVERS, default=[])
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate as browsers do; measures idle memory only",
    )
    args = parser.parse_args()
    chosen = plan(args.quick)
    chosen = Plan(
        idle=args.idle or chosen.idle,
        rounds=args.rounds or chosen.rounds,
        seconds=chosen.seconds,
        deflate=args.deflate,
    )
    server_cpus, load_cpus = cpu_split()
    ctx = Context(args.quick, Availability(), server_cpus, load_cpus)
    results = measure(ctx, chosen, tuple(args.server) or SERVERS)
    print(json.dumps({"websocket": results, "cpus": os.cpu_count()}, indent=1))
    print("\n".join(websocket_md(results)))


if __name__ == "__main__":
    main()
