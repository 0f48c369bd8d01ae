"""WebSocket test apps: one ASGI app whose path picks the behaviour, and what it saw.

`WsApp(record)` records every websocket.disconnect it receives and what a send() after it
raised, so that tests can assert on what the app saw, not only on what the client saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

from aioworker._types import Receive, Scope, Send
from tests.helpers.engine import Gate


class Record:
    """What the app saw, shared with the test thread."""

    def __init__(self) -> None:
        self.disconnects: list[dict[str, Any]] = []
        self.send_errors: list[BaseException] = []
        self.disconnected = threading.Event()
        self.sent = 0  # messages the flood app's send() returned from
        self.gate = Gate()
        self.cancelled = threading.Event()


class WsApp:
    """/echo (and anything else): accept, echo until disconnect. Others: see __call__."""

    def __init__(self, record: Record | None = None) -> None:
        self.record = record or Record()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain http"})
            return
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        path = scope["path"]
        if path == "/deny":
            await send({"type": "websocket.close"})
            return
        if path == "/custom":
            headers = [(b"content-type", b"text/plain"), (b"x-why", b"token")]
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"entry"})
            return
        if path == "/noaccept":
            return
        if path == "/crash-before":
            raise RuntimeError("crash before accept")
        if path == "/listen-before":  # waits for news of the client before deciding
            self.record.gate.entered.set()
            self.record.disconnects.append(dict(await receive()))
            self.record.disconnected.set()
            return
        if path == "/hang-before":
            await self.record.gate.hold()
            return
        subprotocols = scope["subprotocols"]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": subprotocols[-1] if subprotocols else None,
                "headers": [(b"x-extra", b"yes")],
            }
        )
        if path == "/pid":
            await send({"type": "websocket.send", "text": str(os.getpid())})
        elif path == "/scope":
            shown = {k: v for k, v in scope.items() if k not in ("state", "asgi", "headers")}
            shown["raw_path"] = scope["raw_path"].decode()
            shown["query_string"] = scope["query_string"].decode()
            shown["asgi"] = scope["asgi"]
            shown["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
            shown["state"] = sorted(scope["state"])
            await send({"type": "websocket.send", "text": json.dumps(shown)})
        elif path == "/crash":
            await receive()
            raise RuntimeError("crash after accept")
        elif path == "/close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        elif path == "/flood":
            try:
                while True:
                    await send({"type": "websocket.send", "bytes": b"x" * 65536})
                    self.record.sent += 1
            except OSError as exc:
                self.record.send_errors.append(exc)
                self.record.disconnected.set()
                return
        elif path == "/sink":
            await self.record.gate.hold()  # receives nothing until the test opens the gate
        elif path == "/sleep":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.record.cancelled.set()
                raise
        await self._echo(receive, send)

    async def _echo(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.record.disconnects.append(dict(message))
                try:
                    await send({"type": "websocket.send", "text": "too late"})
                except OSError as exc:
                    self.record.send_errors.append(exc)
                self.record.disconnected.set()
                return
            reply = {"type": "websocket.send"}
            if message.get("text") is not None:
                reply["text"] = message["text"]
            else:
                reply["bytes"] = message["bytes"]
            await send(reply)


app = WsApp()  # for masters: "tests.apps.wsapp:app"
