"""The handover from an HTTP connection to a WebSocket, or the refusal of a bad handshake.

connection.py calls `take_over` for a request head that asks to upgrade: handshake.py decides,
a refusal (400, 426, 501 without the ws extra, 503 while stopping) is answered here and the
connection closed, a valid handshake gets a websocket.WebSocket that takes the transport, the
connection's place in the server's table and its counts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, cast

from aioworker.http.context import ServerContext
from aioworker.http.cycle import _scope as http_scope
from aioworker.http.handshake import Refusal, check_handshake
from aioworker.http.parser import RequestHead
from aioworker.http.response import error_response, status_line
from aioworker.http.websocket import AVAILABLE, WebSocket

__all__ = ["Connection", "take_over"]

ws_logger = logging.getLogger("aioworker.websocket")
_missing_logged = False


class Connection(Protocol):
    """What take_over needs from the HTTP connection that read the handshake."""

    ctx: ServerContext
    transport: asyncio.Transport | None
    registered: bool
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    trusted: bool

    def write(self, data: bytes) -> None: ...


def _refuse(conn: Connection, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    ctx = conn.ctx
    ctx.state.count_response(status)
    data = error_response(status, server_header=ctx.server_header, date_header=ctx.date.header)
    if headers:  # the 426's Sec-WebSocket-Version, right after the status line
        first = len(status_line(status))
        data = data[:first] + b"".join(b"%s: %s\r\n" % pair for pair in headers) + data[first:]
    conn.write(data)
    if conn.transport is not None:
        conn.transport.close()


def take_over(conn: Connection, head: RequestHead) -> bool:
    """Serve `head` as a WebSocket if it asks for one; False leaves it to plain HTTP."""
    global _missing_logged
    decision = check_handshake(head)
    if decision is None:
        return False
    if isinstance(decision, Refusal):
        ws_logger.debug("refused WebSocket handshake from %s: %s", conn.client, decision.reason)
        _refuse(conn, decision.status, decision.headers)
        return True
    ctx = conn.ctx
    if not AVAILABLE:
        # 501 rather than 426: the request is valid, this server lacks the feature (RFC 9110
        # section 15.6.2); 426 would tell the client to change protocols, which it did.
        if not _missing_logged:
            _missing_logged = True
            ws_logger.error(
                "WebSocket handshake refused with 501: pip install aioworker[ws] to serve them"
            )
        _refuse(conn, 501)
        return True
    if ctx.closing:
        _refuse(conn, 503)
        return True
    transport = conn.transport
    assert transport is not None  # a head was just read from it
    scope = _scope(head, conn, decision.subprotocols)
    ws = WebSocket(ctx, transport, conn.client, scope, decision)
    # The WebSocket takes the connection's place, and its counts (clients, connections).
    del ctx.connections[conn]  # type: ignore[arg-type]
    conn.registered = False
    ctx.connections[ws] = None
    transport.set_protocol(ws)
    ws.begin()
    return True


def _scope(head: RequestHead, conn: Connection, subprotocols: list[str]) -> dict[str, Any]:
    # The HTTP scope's fields are the same (ASGI 2.4 websocket scope), minus the method.
    scope = cast(dict[str, Any], http_scope(head, cast(Any, conn)))
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope
