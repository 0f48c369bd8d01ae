"""The app of the queue-fed tests: a slow route that blocks its worker, a fast one, a long job.

- ``/work?n=N``: blocks the loop for ``ms`` milliseconds (default 50), answers ``done N pid``.
- ``/long``: blocks for ``ms`` milliseconds (default 5000), answers ``long done``.
- ``/stream``: three body chunks, sent as separate events.
- ``/nap?ms=N``: awaits asyncio.sleep (the loop stays free), answers ``napped``.
- ``/crash``: the worker process exits at once (a job that kills every worker it meets).
- ``/fast``: answers at once; served by the default group itself, never queued.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import parse_qs

from aioworker._types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    path = scope["path"]
    if path.startswith("/work") or path.startswith("/long"):
        ms = float(query.get("ms", ["50" if path.startswith("/work") else "5000"])[0])
        time.sleep(ms / 1000)  # blocking on purpose: a CPU-bound or sync handler
        n = query.get("n", ["-"])[0]
        text = f"done {n} {os.getpid()}" if path.startswith("/work") else "long done"
        await _answer(send, 200, text.encode())
    elif path.startswith("/nap"):
        await asyncio.sleep(float(query.get("ms", ["300"])[0]) / 1000)
        await _answer(send, 200, b"napped")
    elif path.startswith("/crash"):
        os._exit(7)
    elif path.startswith("/stream"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _answer(send, 200, b"fast")


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
