"""What a Redis command costs the client: redis-py's asyncio client or aioworker's own.

Run: `python -m benchmarks.queue_client` (redis-server on PATH, as `scripts/install` sets up;
redis-py comes with the `bench` extra). It starts a redis-server on a free port and, for each
client on uvloop, sends XADDs of a two-field entry one at a time and then in pipelines of ten,
and prints the client process's CPU time per command (time.process_time, so another process's
load does not count), the median of five rounds. Redis's own time is the same for both.
A queue-fed job takes four or five commands on the consumer's side and two or three on the
waiting engine's, so this is the overhead that decides the client (docs/queue.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import uvloop

from benchmarks.burst import _redis
from benchmarks.procs import free_port

COMMANDS = 3000
ROUNDS = 5
ENTRY = ("XADD", "bench", "*", "a", "1", "b", "2")


async def _resp_cases(url: str) -> dict[str, Callable[[], Awaitable[None]]]:
    from aioworker.queue.resp import Client

    client = Client(url)
    await client.execute("PING")

    async def single() -> None:
        for _ in range(COMMANDS):
            await client.execute(*ENTRY)

    async def pipelined() -> None:
        for _ in range(COMMANDS // 10):
            await client.pipeline([ENTRY] * 10)

    return {"aioworker resp, one at a time": single, "aioworker resp, pipelines of 10": pipelined}


async def _redis_py_cases(url: str) -> dict[str, Callable[[], Awaitable[None]]]:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        print("redis-py is not installed (pip install redis): skipped")
        return {}
    client = aioredis.Redis.from_url(url)
    await client.ping()

    async def single() -> None:
        for _ in range(COMMANDS):
            await client.execute_command(*ENTRY)  # type: ignore[no-untyped-call]

    async def pipelined() -> None:
        for _ in range(COMMANDS // 10):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(10):
                    pipe.execute_command(*ENTRY)
                await pipe.execute()

    return {"redis-py, one at a time": single, "redis-py, pipelines of 10": pipelined}


async def _measure(url: str) -> dict[str, float]:
    cases = {**await _redis_py_cases(url), **await _resp_cases(url)}
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():  # interleaved, so a noisy moment hits every case
            started = time.process_time()
            await case()
            rounds[name].append((time.process_time() - started) / COMMANDS * 1e6)
    return {name: statistics.median(values) for name, values in rounds.items()}


def main() -> None:
    port = free_port()
    server = _redis(port)
    try:
        results = uvloop.run(_measure(f"redis://127.0.0.1:{port}/0"))
    finally:
        server.terminate()
        server.wait(10)
    print(f"client CPU per XADD, median of {ROUNDS} rounds of {COMMANDS} commands (uvloop):")
    for name, micros in results.items():
        print(f"  {name:34} {micros:6.1f} us")


if __name__ == "__main__":
    main()
