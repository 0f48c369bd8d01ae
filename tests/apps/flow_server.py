"""A server for the flow-control tests, in its own process so its peak RSS is its own.

`python -m tests.apps.flow_server LOOP PAUSE` prints `READY PORT` once it listens. /upload reads
the body (pausing PAUSE seconds after the first piece, a slow consumer) and answers its size and
CRC; /small answers 16 KiB; any other path answers query-string-many 1 MiB blocks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import zlib
from collections.abc import Sequence

import uvloop

from aioworker._types import Receive, Scope, Send
from aioworker.config import HttpSettings
from aioworker.http.server import serve

BLOCK = bytes(range(256)) * 4096  # 1 MiB
PAUSE = 1.0  # replaced from argv


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/upload":
        total, crc, first = 0, 0, True
        while True:
            message = await receive()
            body = message.get("body", b"")
            total += len(body)
            crc = zlib.crc32(body, crc)
            if first:
                first = False
                await asyncio.sleep(PAUSE)  # a slow consumer: the client must be held back
            if not message.get("more_body"):
                break
        body = json.dumps({"total": total, "crc": crc}).encode()
    elif scope["path"] == "/small":
        body = BLOCK[:16384]
    else:
        n = int(scope["query_string"] or 0)
        length = str(n * len(BLOCK)).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
        )
        for _ in range(n):
            await send({"type": "http.response.body", "body": BLOCK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    length = str(len(body)).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    await send({"type": "http.response.body", "body": body})


def ready(sockets: Sequence[socket.socket]) -> None:
    print("READY", sockets[0].getsockname()[1], flush=True)


async def main() -> None:
    settings = HttpSettings(max_body_bytes=0, request_timeout=0, body_timeout=30.0)
    await serve(app, settings, port=0, ready=ready)


if __name__ == "__main__":
    PAUSE = float(sys.argv[2])
    factory = uvloop.new_event_loop if sys.argv[1] == "uvloop" else asyncio.new_event_loop
    factory().run_until_complete(main())
