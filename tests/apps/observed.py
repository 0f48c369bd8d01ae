"""The app of the observability end-to-end tests: a blocking report, a nap, a memory leak.

The blocking function has a distinctive name: the tests find it in the stack the watchdog dumps.
While a file HOLD exists in the master's working directory, lifespan startup waits (a test keeps
a group down that way).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from aioworker._types import Receive, Scope, Send

KEEP: list[bytearray] = []


def generate_quarterly_report_blocking(seconds: float) -> None:
    print(f"BLOCKING pid={os.getpid()}", file=sys.stderr, flush=True)
    time.sleep(seconds)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                while os.path.exists("HOLD"):  # lets a test keep a group down
                    await asyncio.sleep(0.02)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"].startswith("/task/report"):
        generate_quarterly_report_blocking(30)
    elif scope["path"] == "/nap":
        await asyncio.sleep(0.3)
    elif scope["path"] == "/task/grow":
        KEEP.append(bytearray(b"x" * (100 * 1024 * 1024)))  # a leak, touched so it is resident
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
