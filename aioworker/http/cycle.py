"""The ASGI request cycle: one request's receive()/send() state, response framing and the app call.

The connection (protocol.py) owns the socket, keep-alive and timers; a RequestCycle owns what
the ASGI spec makes per-request: the body handed to the app, the response state machine
(start -> body... -> complete), and how the response is framed on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from typing import Final, Protocol, cast

from aioworker._types import ASGIApp, ASGIVersions, HTTPScope, Message, Scope
from aioworker.http.response import status_line, status_phrase

__all__ = ["ClientDisconnected", "Connection", "RequestCycle"]

logger = logging.getLogger("aioworker.error")


ASGI_VERSION: Final[ASGIVersions] = {"version": "3.0", "spec_version": "2.4"}

# RFC 9110 section 5.1/5.5: a field name is a token; a value holds no CR, LF or NUL. Checking
# what the app sends keeps a header value from an untrusted source from splitting the response.
_INVALID_NAME: Final = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_INVALID_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# Kinds of response header, as far as framing is concerned.
_PLAIN, _LENGTH, _DROP, _CLOSE, _DATE, _SERVER = range(6)
_KINDS: Final = {
    b"content-length": _LENGTH,
    # The server frames the body and owns the connection (RFC 9112 sections 6.1, 9.3).
    b"transfer-encoding": _DROP,
    b"connection": _DROP,
    b"date": _DATE,
    b"server": _SERVER,
}
# Checked and formatted header lines by (name, value): apps send the same few headers on
# every response, and validating plus formatting costs ~1.2 us a header, a lookup ~0.1 us.
# Bounded, so varying values (cookies, lengths) stop being added once it is full.
_LINES: dict[tuple[bytes, bytes], tuple[bytes, int, int]] = {}
_LINES_MAX: Final = 1024


def _header_line(name: bytes, value: bytes) -> tuple[bytes, int, int]:
    """Validate one response header; return its wire line, kind and content length."""
    if _INVALID_NAME.search(name) or _INVALID_VALUE.search(value) or not name:
        raise RuntimeError(f"invalid response header {name!r}: {value!r}")
    kind = _KINDS.get(name.lower(), _PLAIN)
    length = 0
    if kind == _LENGTH:
        if not value.strip().isdigit():
            raise RuntimeError(f"invalid content-length {value!r}")
        length = int(value)
    elif kind == _DROP and name.lower() == b"connection" and b"close" in value.lower():
        kind = _CLOSE
    known = (b"%s: %s\r\n" % (name, value), kind, length)
    if len(_LINES) < _LINES_MAX:
        _LINES[(name, value)] = known
    return known


_CHUNK_END: Final = b"0\r\n\r\n"


class ClientDisconnected(OSError):
    """send() was called after the client went away (ASGI HTTP spec 2.4)."""


class Connection(Protocol):
    """What a cycle needs from its connection."""

    server_header: bytes
    write_paused: bool
    loop: asyncio.AbstractEventLoop

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def resume_reading(self) -> None: ...
    def date_header(self) -> bytes: ...
    def response_complete(self, cycle: RequestCycle) -> None: ...
    def abort(self) -> None: ...


class RequestCycle:
    """One request from its head to the end of its response."""

    __slots__ = (
        "body",
        "body_complete",
        "cancelled",
        "chunked",
        "conn",
        "delivered",
        "disconnected",
        "expected_length",
        "head_only",
        "keep_alive",
        "method",
        "path",
        "pending_head",
        "response_complete",
        "response_started",
        "scope",
        "sent_length",
        "started",
        "status",
        "task",
        "waiter",
        "waiting_for_continue",
        "waiting_since",
    )

    def __init__(
        self,
        scope: HTTPScope,
        conn: Connection,
        *,
        keep_alive: bool,
        expect_continue: bool,
        started: float,
    ) -> None:
        self.scope = scope
        self.conn = conn
        self.method = scope["method"]
        self.path = scope["path"]
        self.started = started
        self.keep_alive = keep_alive
        self.waiting_for_continue = expect_continue
        self.body = bytearray()
        self.body_complete = False
        self.delivered = False
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.head_only = self.method == "HEAD"
        self.chunked = False
        self.expected_length: int | None = None
        self.sent_length = 0
        self.status = 0
        self.pending_head = b""
        self.waiter: asyncio.Future[None] | None = None
        # loop time since when the app waits for body bytes (for body_timeout), 0 if not.
        self.waiting_since = 0.0
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False  # the server cancelled the app (deadline or shutdown)

    # -- fed by the connection ----------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self.body += data
        self.wake()

    def end_body(self) -> None:
        self.body_complete = True
        self.wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.waiting_since = 0.0
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self, for_body: bool) -> None:
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        if for_body:
            self.waiting_since = time.monotonic()
        await waiter

    # -- the app's side -----------------------------------------------------------------

    async def receive(self) -> Message:
        if self.waiting_for_continue:
            # RFC 9110 section 10.1.1: answer 100 only once the app actually asks for the body.
            self.waiting_for_continue = False
            if not self.disconnected and not self.response_started:
                self.conn.write(_CONTINUE)
        if not self.disconnected and not self.response_complete:
            if not self.body and not self.body_complete:
                self.conn.resume_reading()
                await self._wait(for_body=True)
            elif self.delivered:
                await self._wait(for_body=False)  # nothing left but a disconnect to report
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        more_body = not self.body_complete
        self.body = bytearray()
        if more_body:
            self.conn.resume_reading()
        else:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": more_body}

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused:
            await conn.drain()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start(message)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"unexpected {kind!r} after the response completed")

    # -- framing ------------------------------------------------------------------------

    def _start(self, message: Message) -> None:
        status = int(message["status"])
        self.status = status
        conn = self.conn
        parts = [status_line(status)]
        has_date = has_server = False
        for name, value in message.get("headers", ()):
            try:
                known = _LINES.get((name, value))
            except TypeError:  # bytearray or memoryview: unhashable, take the slow path
                known = None
            if known is None:
                known = _header_line(bytes(name), bytes(value))
            line, kind, length = known
            if kind == _PLAIN:
                parts.append(line)
            elif kind == _LENGTH:
                if self.expected_length is not None:
                    # Two lengths let a proxy and a client frame the body differently.
                    raise RuntimeError("several content-length headers in one response")
                self.expected_length = length
                parts.append(line)
            elif kind == _CLOSE:
                self.keep_alive = False
            elif kind == _DATE:
                has_date = True
                parts.append(line)
            elif kind == _SERVER:
                has_server = True
                parts.append(line)
        if not has_server:
            parts.append(conn.server_header)
        if not has_date:
            parts.append(conn.date_header())
        if status < 200 or status in (204, 304):
            self.head_only = True  # RFC 9110 sections 15.2, 15.3.5, 15.4.5: never a body
        # Only now: a header refused above leaves the response unstarted, so it becomes a 500.
        self.response_started = True
        self.pending_head = b"".join(parts)
        # Held back so that a head and a body sent together leave in one write with a length;
        # if the app yields before its first body (server-sent events, long polls, LLM token
        # streams), the head goes out as soon as the loop runs anything else.
        self.conn.loop.call_soon(self.flush_head)

    def _finish_head(self, first_body: bytes | None) -> bytes:
        """Complete the head once the framing is known; first_body is set if it is the last."""
        head = self.pending_head
        self.pending_head = b""
        framing = b""
        if self.expected_length is None and not self.head_only:
            if first_body is not None:
                # The whole body arrived in one message: a length beats chunked framing.
                self.expected_length = len(first_body)
                framing = b"content-length: %d\r\n" % len(first_body)
            elif self.scope["http_version"] == "1.1":
                self.chunked = True
                framing = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False  # HTTP/1.0: the body ends when the connection does
        if not self.keep_alive:
            framing += b"connection: close\r\n"
        elif self.scope["http_version"] == "1.0":
            framing += b"connection: keep-alive\r\n"
        return head + framing + b"\r\n"

    def flush_head(self) -> None:
        """Send a head the app has not followed with a body yet (e.g. a slow stream)."""
        if self.pending_head and not self.response_complete:
            self.conn.write(self._finish_head(None))

    def _body(self, body: bytes, more_body: bool) -> None:
        head = self._finish_head(None if more_body else body) if self.pending_head else b""
        if self.head_only:
            data = b""
        elif self.chunked:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += _CHUNK_END
        else:
            data = body
            self.sent_length += len(body)
            expected = self.expected_length
            if expected is not None and self.sent_length > expected:
                self.keep_alive = False
                self.response_complete = True
                if head:
                    self.conn.write(head)
                self.conn.abort()
                raise RuntimeError(
                    f"response body longer than content-length {expected}: connection closed"
                )
            if not more_body and expected is not None and self.sent_length < expected:
                self.keep_alive = False
                self.response_complete = True
                self.conn.write(head + data)
                self.conn.abort()
                raise RuntimeError(
                    f"response body of {self.sent_length} bytes is shorter than content-length "
                    f"{expected}: connection closed"
                )
        if len(data) < 65536:
            if head or data:
                self.conn.write(head + data)
        else:  # large bodies are not copied just to prepend a head
            if head:
                self.conn.write(head)
            self.conn.write(data)
        if not more_body:
            self.response_complete = True
            self.conn.response_complete(self)
            # A receive() already waiting (a framework's disconnect watcher) now returns
            # http.disconnect, as one called after the response would (ASGI HTTP spec).
            self.wake()

    # -- running the app ----------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(cast(Scope, self.scope), self.receive, self.send)
        except asyncio.CancelledError:
            self.finish_cancelled()
            raise
        except BaseException as exc:
            if self.disconnected and isinstance(exc, OSError):
                logger.debug("client went away during %s %s", self.method, self.path)
            else:
                logger.exception("exception in ASGI app for %s %s", self.method, self.path)
            self.fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.response_complete:
                # An app that stops once the client is gone (Starlette's StreamingResponse
                # does) is not at fault: nothing to log.
                if self.response_started and not self.disconnected:
                    logger.error(
                        "ASGI app returned without completing the response to %s %s",
                        self.method,
                        self.path,
                    )
                elif not self.disconnected:
                    logger.error(
                        "ASGI app returned without a response to %s %s", self.method, self.path
                    )
                self.fail()

    def fail(self, status: int = 500, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """The app cannot finish: answer `status` if nothing was sent, else abort."""
        if self.response_complete:
            return
        if self.disconnected:
            # Nobody to answer. The connection may still be half-open (the client sent FIN):
            # close it, or it would stay registered with no request and no timeout.
            self.conn.abort()
            return
        if not self.response_started:
            self.keep_alive = self.keep_alive and self.body_complete
            self.expected_length = None
            self._start(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), *extra_headers],
                }
            )
            self._body(f"{status_phrase(status)}\n".encode("ascii"), False)
        else:
            self.keep_alive = False
            self.response_complete = True
            self.conn.abort()
            self.conn.response_complete(self)

    def finish_cancelled(self) -> None:
        """The request's deadline passed or the server stopped waiting: 504 or abort."""
        self.fail(504 if self.cancelled else 503)
