"""The ASGI apps every server runs in the throughput scenario: plain ASGI, no framework.

GET  /             13-byte hello world
GET  /bytes/N      N bytes of body (built once per size, so the app measures the server)
POST /upload       reads the whole body, answers with its length
GET  /fastapi/items/ID?q=TEXT   a FastAPI JSON route (path and query parameters validated,
                   a dict serialised), when FastAPI is installed: a framework-bound request
WS   any path      accepts and echoes every message until the client closes
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!"
_HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
_MAX_BYTES = 16 * 1024 * 1024
_bodies: dict[int, bytes] = {}


def _fastapi_app() -> Any:
    try:
        from fastapi import FastAPI
    except ImportError:
        return None
    api = FastAPI()

    @api.get("/fastapi/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    return api


FASTAPI = _fastapi_app()


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
        return
    if kind == "websocket":
        await _echo(receive, send)
        return
    if kind != "http":
        return
    path: str = scope["path"]
    if path.startswith("/fastapi/") and FASTAPI is not None:
        await FASTAPI(scope, receive, send)
    elif path == "/":
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
    elif path.startswith("/bytes/"):
        try:
            size = int(path[7:])
        except ValueError:
            size = -1
        if not 0 <= size <= _MAX_BYTES:
            await _send(send, 400, b"bad size")
            return
        body = _bodies.get(size)
        if body is None:
            body = _bodies[size] = b"x" * size
        await _send(send, 200, body)
    elif path == "/upload":
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _send(send, 200, str(received).encode())
    else:
        await _send(send, 404, b"not found")


async def _echo(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
