"""The built-in load generator: keep-alive HTTP/1.1 connections on asyncio, used when wrk is absent.

Each connection sends a request (or `--pipeline` requests at once), waits for every response,
records the latency and sends again, until the duration ends or SIGINT/SIGTERM arrives. It
prints one JSON object in the same shape as `benchmarks.wrk` returns.

Its limits, stated wherever its figures appear: one Python process on one core. It tops out
at a few tens of thousands of requests per second, so against the fastest servers it measures
itself as much as the server, and its latencies include its own event-loop delays. Use wrk
for publishable figures; this one exists so the harness runs anywhere.

    python -m benchmarks.loadgen http://127.0.0.1:8000/ --connections 64 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


def build_request(url: str, method: str = "GET", body_size: int = 0, pipeline: int = 1) -> bytes:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    body = b""
    if body_size or method in ("POST", "PUT"):
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {body_size}\r\n"
        body = b"x" * body_size
    return (head.encode() + b"\r\n" + body) * pipeline


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


class Stats:
    """Counters shared by every connection of one run."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        # Read errors where a reused keep-alive connection closed before any byte of the
        # answer: the request never reached the app, and HTTP clients retry these by themselves.
        self.unanswered_reused = 0
        self.latencies: list[float] = []


class Connection(asyncio.Protocol):
    """One keep-alive connection that always has a request (or a pipelined batch) in flight."""

    def __init__(self, gen: LoadGenerator) -> None:
        self.gen = gen
        self.stats = gen.stats
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.pending = 0
        self.started = 0.0
        self.served = 0  # responses completed on this connection
        self.answered = False  # a byte of the current answer arrived
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        self.pending = self.gen.pipeline
        self.answered = False
        self.started = time.perf_counter()
        self.transport.write(self.gen.payload)

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.stats.errors["read"] += 1
            self.pending = 0
            self.transport.close()

    def on_message_complete(self) -> None:
        stats = self.stats
        stats.requests += 1
        if self.parser.get_status_code() >= 400:
            stats.errors["status"] += 1
        self.pending -= 1
        self.served += 1
        if self.pending:
            return
        stats.latencies.append(time.perf_counter() - self.started)
        if self.gen.running and self.parser.should_keep_alive():
            self.send()
        else:
            self.transport.close()

    def check_timeout(self, now: float) -> None:
        if self.pending and now - self.started > self.gen.timeout:
            self.stats.errors["timeout"] += 1
            self.pending = 0
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending and self.gen.running:
            self.stats.errors["read"] += 1
            if self.served and not self.answered:
                self.stats.unanswered_reused += 1
        if not self.done.done():
            self.done.set_result(None)


class LoadGenerator:
    """Runs `connections` connection loops against one URL for a duration."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 64,
        duration: float = 5.0,
        method: str = "GET",
        body_size: int = 0,
        pipeline: int = 1,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.connections = connections
        self.duration = duration
        self.pipeline = pipeline
        self.timeout = timeout
        self.payload = build_request(url, method, body_size, pipeline)
        self.stats = Stats()
        self.running = True
        self.live: set[Connection] = set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(self), self.host, self.port
                )
            except OSError:
                self.stats.errors["connect"] += 1
                # Back off a little so a server that is down is not spun against at 100% CPU.
                await asyncio.sleep(0.01)
                continue
            self.live.add(conn)
            await conn.done
            self.live.discard(conn)

    async def _watch_timeouts(self) -> None:
        while self.running:
            await asyncio.sleep(0.1)
            now = time.perf_counter()
            for conn in list(self.live):
                conn.check_timeout(now)

    async def run(self, stop: asyncio.Future[None] | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stop = stop if stop is not None else loop.create_future()
        loops = [asyncio.ensure_future(self._loop()) for _ in range(self.connections)]
        watcher = asyncio.ensure_future(self._watch_timeouts())
        start = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(stop), self.duration)
        except asyncio.TimeoutError:
            pass
        elapsed = time.perf_counter() - start
        self.running = False
        for conn in list(self.live):
            conn.transport.abort()
        for task in [*loops, watcher]:
            task.cancel()
        await asyncio.gather(*loops, watcher, return_exceptions=True)
        return self.result(elapsed)

    def result(self, elapsed: float) -> dict[str, Any]:
        stats = self.stats
        latencies = sorted(stats.latencies)
        mean = sum(latencies) / len(latencies) if latencies else 0.0
        return {
            "tool": "builtin",
            "requests": stats.requests,
            "duration_s": round(elapsed, 3),
            "rps": round(stats.requests / elapsed, 1) if elapsed else 0.0,
            "bytes": stats.bytes,
            "latency_ms": {
                "p50": round(percentile(latencies, 0.50) * 1000, 3),
                "p90": round(percentile(latencies, 0.90) * 1000, 3),
                "p99": round(percentile(latencies, 0.99) * 1000, 3),
                "max": round((latencies[-1] if latencies else 0.0) * 1000, 3),
                "mean": round(mean * 1000, 3),
            },
            "errors": dict(stats.errors),
            "failed": sum(stats.errors.values()),
            "unanswered_reused": stats.unanswered_reused,
        }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, finish)
    gen = LoadGenerator(
        args.url,
        connections=args.connections,
        duration=args.duration,
        method=args.method,
        body_size=args.body_size,
        pipeline=args.pipeline,
        timeout=args.timeout,
    )
    print("loadgen running", file=sys.stderr, flush=True)
    return await gen.run(stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=64)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-size", type=int, default=0, help="request body bytes")
    parser.add_argument("--pipeline", type=int, default=1, help="requests sent per batch")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    args = parser.parse_args()
    result = uvloop.run(_main(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
