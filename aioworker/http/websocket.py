"""One WebSocket: the ASGI websocket cycle (ASGI spec 2.4, websocket scope), handshake to close.

upgrade.py puts a `WebSocket` in the place of the HTTP connection that read a valid handshake:
from then on it is the transport's protocol, it sits in the server's connection table (graceful
stop, timeouts and max_connections see it) and it runs the app. This module answers the
handshake (101, or the app's or our denial), gives the app receive() and send() and counts and
logs the handshake once; the frames, flow control and keepalive are wsframes.py's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, cast

from aioworker._types import ASGIApp, Message, Scope
from aioworker.http.access import Answered
from aioworker.http.context import ServerContext
from aioworker.http.framing import ClientDisconnected
from aioworker.http.handshake import Handshake
from aioworker.http.response import (
    CLOSE,
    error_response,
    header_line,
    status_line,
)
from aioworker.http.wsframes import (
    AVAILABLE,
    CLOSE_TIMEOUT,
    WsState,
    WsTransport,
    frames_logger,
    ws_logger,
)

if AVAILABLE:
    from websockets.protocol import Protocol as Frames
    from websockets.protocol import Side
    from websockets.protocol import State as FrameState

    from aioworker.http.deflate import negotiate_deflate

__all__ = ["AVAILABLE", "WebSocket", "WsState", "response"]

logger = logging.getLogger("aioworker.error")

_HANDSHAKE: Final = WsState.HANDSHAKE
_DENYING: Final = WsState.DENYING
_OPEN: Final = WsState.OPEN
_CLOSED: Final = WsState.CLOSED


def response(ctx: ServerContext, status: int, headers: list[bytes], body: bytes = b"") -> bytes:
    return b"".join(
        (
            status_line(status),
            *headers,
            b"content-length: %d\r\n" % len(body) if status != 101 else b"",
            CLOSE if status != 101 else b"",
            ctx.server_header,
            ctx.date.header,
            b"\r\n",
            body,
        )
    )


class WebSocket(WsTransport):
    """asyncio protocol and ASGI cycle of one WebSocket, from its handshake to its close."""

    # Slots, as in WsTransport: no __dict__ on an object every open WebSocket holds.
    __slots__ = (
        "cancelled",
        "client",
        "connected",
        "counted",
        "deny_body",
        "deny_headers",
        "deny_status",
        "gone",
        "handshake",
        "method",
        "scope",
        "sent_length",
        "started",
        "status",
        "task",
    )

    def __init__(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport,
        client: tuple[str, int] | None,
        scope: dict[str, Any],
        handshake: Handshake,
    ) -> None:
        super().__init__(ctx, transport, scope["path"])
        self.client = client
        self.handshake = handshake
        self.scope = scope
        self.method = "GET"  # for the counters' active requests and the status page
        self.status = 0  # of the handshake's answer, once given (for the access log)
        self.sent_length = 0  # body bytes of that answer: a 101 has none
        self.started = time.monotonic()
        self.counted = False  # the handshake was counted as a request
        self.connected = False  # websocket.connect was delivered
        self.gone = False  # the TCP connection closed
        self.deny_status = 0
        self.deny_headers: list[bytes] = []
        self.deny_body = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False

    # -- what the server asks of every connection (context.ConnectionLike) ------------------

    @property
    def cycle(self) -> WebSocket:
        return self

    @property
    def evictable(self) -> bool:
        return False  # an open WebSocket is never idle in the sense of max_connections

    def evict(self) -> None:  # pragma: no cover - never evictable
        self.transport.abort()

    def begin(self) -> None:
        ctx = self.ctx
        state = ctx.state
        state.request_started(self)
        if state.in_progress > self.settings.max_requests_in_progress:
            self._deny(503)
            return
        self.task = ctx.loop.create_task(self.run(ctx.app))

    def check_timeouts(self, now: float) -> None:
        """The server's tick: the handshake deadline, keepalive pings, the close timeout."""
        if self.transport.is_closing():
            return
        if self.state is _HANDSHAKE or self.state is _DENYING:
            # request_timeout covers the handshake only: an accepted WebSocket may live for days.
            timeout = self.settings.request_timeout
            if timeout and now - self.started > timeout and not self.cancelled:
                ws_logger.warning(
                    "WebSocket %s passed its handshake deadline of %gs: cancelled",
                    self.path,
                    timeout,
                )
                self.cancel()
            return
        self._tick(now)

    def shutdown(self) -> None:
        """Graceful stop: an open WebSocket goes on until force_close (graceful_timeout)."""

    def force_close(self) -> None:
        """The graceful timeout passed: close with 1001 (going away), then stop the app."""
        frames = self.frames
        if self.state is _OPEN and frames is not None and frames.state is FrameState.OPEN:
            frames.send_close(1001, "server shutting down")
            self._flush()
            self._disconnected(1001, "server shutting down")
        else:
            self._disconnected(1006, "")
        self.transport.close()
        # The app gets one turn to see websocket.disconnect, then is cancelled like a request.
        self.ctx.loop.call_soon(self.cancel)

    def cancel(self) -> None:
        task = self.task
        if task is not None and not task.done():
            self.cancelled = True
            task.cancel()

    # -- asyncio.Protocol: the end of the connection ------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gone:
            return
        self.gone = True
        ctx = self.ctx
        if self in ctx.connections:
            del ctx.connections[self]
            address = self.client[0] if self.client else ""
            left = ctx.clients.get(address, 1) - 1
            if left:
                ctx.clients[address] = left
            else:
                ctx.clients.pop(address, None)
            ctx.state.connections -= 1
            if ctx.closing and not ctx.connections:
                ctx.drained.set()
        self._disconnected(1006, "")
        self._account(None)
        self._wake_drain()

    # -- the app's side ------------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.incoming and self.state is not _CLOSED and not self.gone:
            waiter = self.waiter = self.ctx.loop.create_future()
            await waiter
        if self.incoming:
            message = self.incoming.popleft()
            if self.reading_paused and len(self.incoming) < self.settings.ws_max_queue // 2 + 1:
                self.reading_paused = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()
            return message
        return {
            "type": "websocket.disconnect",
            "code": self.disconnect_code,
            "reason": self.disconnect_reason,
        }

    async def send(self, message: Message) -> None:
        kind = message["type"]
        state = self.state
        if state is _CLOSED or self.gone:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.send" and state is _OPEN:
            frames = self.frames
            assert frames is not None
            if frames.state is not FrameState.OPEN:  # closing: no data frame may follow
                raise ClientDisconnected("the WebSocket is closing")
            if self.transport.is_closing():
                # The write that met the client's reset closed the transport; connection_lost
                # comes at the next loop turn. A closing transport never pauses writing, so an
                # app that sends in a loop would never yield to it (the loop would spin).
                raise ClientDisconnected("the client is gone")
            text = message.get("text")
            if text is not None:
                frames.send_text(text.encode("utf-8"))
            else:
                frames.send_binary(message.get("bytes") or b"")
            self.ctx.state.ws_messages_out += 1
            self.ctx.state.bytes_out += self._flush()
            if self.write_paused:
                waiter = self.drain_waiter
                if waiter is None:
                    waiter = self.drain_waiter = self.ctx.loop.create_future()
                await waiter
        elif kind == "websocket.accept" and state is _HANDSHAKE:
            self._accept(message)
        elif kind == "websocket.close" and state is _OPEN:
            frames = self.frames
            assert frames is not None
            code = int(message.get("code") or 1000)
            frames.send_close(code, message.get("reason") or "")
            self.ctx.state.bytes_out += self._flush()
            self.close_deadline = time.monotonic() + CLOSE_TIMEOUT
            self._disconnected(code, message.get("reason") or "")
        elif kind == "websocket.close" and state is _HANDSHAKE:
            self._deny(403)  # ASGI: close before accept rejects the handshake with 403
        elif kind == "websocket.http.response.start" and state is _HANDSHAKE:
            self.state = _DENYING
            self.deny_status = int(message["status"])
            self.deny_headers = [
                header_line(bytes(name), bytes(value))[0]
                for name, value in message.get("headers", ())
                if bytes(name).lower() not in (b"content-length", b"connection")
            ]
        elif kind == "websocket.http.response.body" and state is _DENYING:
            self.deny_body += message.get("body", b"")
            if not message.get("more_body", False):
                self._deny(self.deny_status, self.deny_headers, bytes(self.deny_body))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in WebSocket state {state.value}")

    def _accept(self, message: Message) -> None:
        ctx = self.ctx
        handshake = self.handshake
        settings = self.settings
        frames = Frames(Side.SERVER, max_size=settings.ws_max_message_bytes, logger=frames_logger)
        lines = [
            b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: %s\r\n"
            % handshake.accept
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            lines.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode("latin-1"))
        if settings.ws_per_message_deflate and handshake.extensions:
            agreed = negotiate_deflate(handshake.extensions, frames)
            if agreed:
                lines.append(b"sec-websocket-extensions: %s\r\n" % agreed.encode("latin-1"))
        for name, value in message.get("headers", ()):
            lines.append(header_line(bytes(name), bytes(value))[0])
        self.state = _OPEN
        self.frames = frames
        ctx.state.websockets += 1
        data = response(ctx, 101, lines)
        ctx.state.bytes_out += len(data)
        self.transport.write(data)
        self.last_ping = time.monotonic()
        self._account(101)
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            frames.receive_data(early)
            self._handle_frames(frames)
        if self.reading_paused and len(self.incoming) < settings.ws_max_queue:
            self.reading_paused = False
            self.transport.resume_reading()

    def _deny(self, status: int, headers: list[bytes] | None = None, body: bytes = b"") -> None:
        """Refuse the handshake with an HTTP response (403, the app's own, 500, 503)."""
        self.state = _CLOSED
        if not self.transport.is_closing():
            if headers is None:
                data = error_response(
                    status, server_header=self.ctx.server_header, date_header=self.ctx.date.header
                )
            else:
                data = response(self.ctx, status, headers, body)
            self.ctx.state.bytes_out += len(data)
            self.transport.write(data)
            self.transport.close()
        self._account(status)

    def _account(self, status: int | None) -> None:
        """Count the handshake once as a request (max_requests sees each WebSocket once)."""
        if self.counted:
            return
        self.counted = True
        elapsed = time.monotonic() - self.started
        counted = self.ctx.state.request_ended(self, status, elapsed)
        access = self.ctx.access
        if counted and status is not None and access is not None:
            # The handshake's line, in the configured format: GET, the path, 101 (or the denial).
            self.status = status
            access.log(cast(Answered, self), elapsed)

    # -- running the app -----------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(cast(Scope, self.scope), self.receive, self.send)
        except asyncio.CancelledError:
            self._end(504 if self.cancelled else 503, 1001)
            raise
        except BaseException as exc:
            if (self.gone or self.state is _CLOSED) and isinstance(exc, OSError):
                ws_logger.debug("client left WebSocket %s", self.path)
            else:
                logger.exception("exception in ASGI app for WebSocket %s", self.path)
            self._end(500, 1011)
            if not isinstance(exc, Exception):
                raise
        else:
            if self.state is _HANDSHAKE:
                logger.error("ASGI app returned without accepting WebSocket %s", self.path)
            self._end(500, 1000)

    def _end(self, status: int, code: int) -> None:
        """The app is done: deny the handshake with `status` or close with `code`."""
        state = self.state
        if state is _HANDSHAKE or state is _DENYING:
            self._deny(status)
        elif state is _OPEN:
            frames = self.frames
            assert frames is not None
            if frames.state is FrameState.OPEN:
                frames.send_close(code)
                self._flush()
                self.close_deadline = time.monotonic() + CLOSE_TIMEOUT
            self._disconnected(code, "")
