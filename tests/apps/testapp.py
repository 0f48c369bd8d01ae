"""The app the master tests run: it tells who served a request and marks what it is doing.

Markers go to stderr, which the tests read through the master's output, before the app blocks or
waits, so a test knows a request is in progress without sleeping. Files in the master's working
directory (the test's own) change its behaviour: FAIL_IMPORT makes the import fail.
Environment: HANG_STARTUP and FAIL_STARTUP act on lifespan startup, GREETING shows in the answer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

from aioworker._types import Receive, Scope, Send


def mark(text: str) -> None:
    # One write per line: several processes share this pipe, and print() may write in pieces.
    os.write(2, (text + "\n").encode())


if os.path.exists("FAIL_IMPORT"):
    raise RuntimeError("import failed on purpose")
mark(f"IMPORTED testapp pid={os.getpid()}")


def make_app() -> Any:
    mark(f"FACTORY pid={os.getpid()}")
    return app


async def consume() -> None:
    mark(f"CONSUMING pid={os.getpid()} worker={os.environ['AIOWORKER_WORKER']}")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        mark(f"CONSUMER CANCELLED pid={os.getpid()}")
        raise


def _arg(scope: Scope, name: str, default: float) -> float:
    values = parse_qs(scope["query_string"].decode()).get(name)
    return float(values[0]) if values else default


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("HANG_STARTUP"):
                    await asyncio.sleep(3600)
                if os.environ.get("FAIL_STARTUP"):
                    await send(
                        {
                            "type": "lifespan.startup.failed",
                            "message": "database unreachable on purpose",
                        }
                    )
                    return
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path.startswith("/task/block"):
        mark(f"BLOCKING pid={os.getpid()}")
        time.sleep(_arg(scope, "seconds", 1.0))
    elif path == "/slow":
        mark(f"SLOW STARTED pid={os.getpid()}")
        await asyncio.sleep(_arg(scope, "seconds", 1.0))
    body = json.dumps(
        {
            "group": os.environ.get("AIOWORKER_GROUP"),
            "worker": os.environ.get("AIOWORKER_WORKER"),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "env": os.environ.get("GREETING"),
            "frozen": gc.get_freeze_count(),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
