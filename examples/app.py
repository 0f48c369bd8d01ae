"""The example app: a plain ASGI app with fast routes and blocking slow routes under /task/.

Fast routes answer at once. Routes under /task/ block the event loop, as a report, an export,
a blocking client library or CPU work would: in one shared pool they freeze every request on
that worker; in aioworker's `task` group they only ever hold up other /task/ requests.

    GET /            plain text hello
    GET /info        JSON: group, worker slot and pid that answered, client address
    POST /echo       echoes the request body
    GET /task/sleep?seconds=0.05   blocks the loop with time.sleep (default 50 ms)
    GET /task/cpu?n=200000         burns CPU in pure Python
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]


async def _reply(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _query(scope: Scope, name: str, default: float) -> float:
    values = parse_qs(scope["query_string"].decode("latin-1")).get(name)
    try:
        return float(values[0]) if values else default
    except ValueError:
        return default


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path == "/":
        await _reply(send, 200, b"Hello, world!", b"text/plain")
    elif path == "/info":
        info = {
            "group": os.environ.get("AIOWORKER_GROUP", ""),
            "worker": os.environ.get("AIOWORKER_WORKER", ""),
            "pid": os.getpid(),
            "client": list(scope["client"]) if scope.get("client") else None,
            "scheme": scope["scheme"],
        }
        await _reply(send, 200, json.dumps(info).encode(), b"application/json")
    elif path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await _reply(send, 200, body, b"application/octet-stream")
    elif path.startswith("/task/sleep"):
        seconds = min(_query(scope, "seconds", 0.05), 60.0)
        time.sleep(seconds)  # noqa: ASYNC251 - deliberately blocking: the task group is for this
        await _reply(send, 200, f"slept {seconds}s".encode(), b"text/plain")
    elif path.startswith("/task/cpu"):
        n = int(min(_query(scope, "n", 200_000), 50_000_000))
        total = sum(i * i for i in range(n))
        await _reply(send, 200, str(total).encode(), b"text/plain")
    else:
        await _reply(send, 404, b"Not Found", b"text/plain")
