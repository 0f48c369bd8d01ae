"""The response half of a request cycle: its ResponseState and HTTP/1.1 framing of http.response.*.

`Response` turns the app's http.response.start and http.response.body messages into bytes on
the connection: it checks the headers, holds the head back to send it with the first body,
picks the framing (RFC 9112 section 6.3) and refuses bodies that break it. A request cycle
(cycle.py) is a Response that also receives, runs the app and keeps deadlines.
"""

from __future__ import annotations

import enum
from typing import Any, Final, NoReturn, Protocol

from aioworker._types import HTTPScope, Message
from aioworker.http.context import ServerContext
from aioworker.http.response import (
    CLOSE,
    CLOSES,
    DATE,
    HEADER_LINES,
    KEEP_ALIVE,
    LENGTH,
    PLAIN,
    SERVER,
    error_body,
    error_response,
    header_line,
    status_line,
)

__all__ = ["ClientDisconnected", "Connection", "Framing", "Response", "ResponseState"]

_CHUNK_END: Final = b"0\r\n\r\n"


class ResponseState(enum.Enum):
    """How far the response has gone. Only ever forward; COMPLETE only in `Response._enter`,
    which ends the request (the two steps before it are plain stores: a call each per request):

    NOT_STARTED -> HEAD_HELD (http.response.start) -> STREAMING (the head is written) -> COMPLETE;
    any state -> COMPLETE when the last body is written, an error response replaces the app's
    (from NOT_STARTED, or HEAD_HELD: that head never left) or the connection is aborted under a
    response it cannot finish.
    """

    NOT_STARTED = "not started"
    HEAD_HELD = "head held"  # kept back to leave with the first body in one write
    STREAMING = "streaming"
    COMPLETE = "complete"


class Framing(enum.Enum):
    """How the body is delimited on the wire (RFC 9112 section 6.3)."""

    UNDECIDED = "undecided"  # until the head is written
    NO_BODY = "no body"  # HEAD, 1xx, 204, 304 (RFC 9110 sections 9.3.2, 15.2, 15.3.5, 15.4.5)
    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until close"  # HTTP/1.0 without a length


# Module aliases on the hot path: `Framing.LENGTH` costs ~200 ns on 3.11, a global ~10 ns.
_NOT_STARTED: Final = ResponseState.NOT_STARTED
_HEAD_HELD: Final = ResponseState.HEAD_HELD
_STREAMING: Final = ResponseState.STREAMING
_COMPLETE: Final = ResponseState.COMPLETE
_UNDECIDED: Final = Framing.UNDECIDED
_NO_BODY: Final = Framing.NO_BODY
_LENGTH: Final = Framing.LENGTH
_CHUNKED: Final = Framing.CHUNKED


def _checked_status(status: object) -> int:
    """The status of an http.response.start that is not a plain int in 200-599, if it can be sent.

    1xx are the server's to send (100 Continue) or need a protocol of their own (101), and a
    status outside 100-599 is no HTTP status (RFC 9110 section 15): sending either would leave
    the client unable to frame what follows. An int subclass (HTTPStatus.OK) is its value.
    """
    if isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599:
        return int(status)
    raise RuntimeError(f"invalid response status {status!r}: an int from 200 to 599 is needed")


# Known response heads by (status, headers as sent): the status line and the app's header
# lines, checked, with what framing needs from them. Apps send the same few heads again and
# again; one lookup replaces a lookup, a tuple and a few comparisons per header (hello world:
# 105,605 -> 101,997 instructions per request on uvloop, callgrind). Bounded like
# response.HEADER_LINES: heads that vary (cookies, lengths) stop being added once it is full.
_HEADS: dict[tuple[int, tuple[Any, ...]], tuple[bytes, int | None, bool, bool, bool]] = {}
_HEADS_MAX: Final = 1024


def _head(status: int, headers: tuple[Any, ...]) -> tuple[bytes, int | None, bool, bool, bool]:
    """(status line + header lines, content length or None, closes the connection, has a
    server header, has a date header); RuntimeError for a header that cannot be sent."""
    parts = [status_line(status)]
    expected_length: int | None = None
    closes = has_date = has_server = False
    for name, value in headers:
        try:
            known = HEADER_LINES.get((name, value))
        except TypeError:  # bytearray or memoryview: unhashable, take the slow path
            known = None
        if known is None:
            known = header_line(bytes(name), bytes(value))
        line, kind, length = known
        if kind == PLAIN:
            parts.append(line)
        elif kind == LENGTH:
            if expected_length is not None:
                # Two lengths let a proxy and a client frame the body differently.
                raise RuntimeError("several content-length headers in one response")
            expected_length = length
            if status == 204:
                # RFC 9110 section 8.6: never sent on a 204. A 0 is what Django's
                # CommonMiddleware adds to every response: dropped; any other is a mistake.
                if length:
                    raise RuntimeError(f"a 204 response has no body: content-length {length}")
                continue
            parts.append(line)
        elif kind == CLOSES:
            closes = True
        elif kind == DATE:
            has_date = True
            parts.append(line)
        elif kind == SERVER:
            has_server = True
            parts.append(line)
    return b"".join(parts), expected_length, closes, has_server, has_date


class ClientDisconnected(OSError):
    """send() was called after the client went away (ASGI HTTP spec 2.4)."""


class Connection(Protocol):
    """What a response needs from its connection."""

    ctx: ServerContext
    write_paused: bool

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...


class Response:
    """Response state and framing; the request cycle that inherits it supplies the rest.

    RequestCycle.__init__ sets these slots too (NOT_STARTED, UNDECIDED, no head, status 0):
    one __init__ call a request fewer.
    """

    __slots__ = (
        "expected_length",
        "framing",
        "head",
        "keep_alive",
        "sent_length",
        "stamp",
        "state",
        "status",
    )

    keep_alive: bool
    state: ResponseState
    framing: Framing
    expected_length: int | None
    sent_length: int
    status: int
    head: bytes  # the status line and the app's header lines while HEAD_HELD
    stamp: bytes  # the server's header lines that follow them (server, date)
    # Set by the request cycle (its slots).
    conn: Connection
    scope: HTTPScope
    method: str
    disconnected: bool

    def _enter(self, state: ResponseState) -> None:
        """The one place the response becomes COMPLETE; the request cycle extends it."""
        self.state = state
        if state is _COMPLETE:
            self.head = b""

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.write_paused:
            await conn.drain()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        kind = message["type"]
        state = self.state
        if state is _NOT_STARTED:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            self._start(message)
        elif state is not _COMPLETE:
            if kind != "http.response.body":
                raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"unexpected {kind!r} after the response completed")

    # -- framing ------------------------------------------------------------------------

    def _start(self, message: Message) -> None:
        status = message["status"]
        if status.__class__ is not int or not 200 <= status <= 599:
            status = _checked_status(status)
        self.status = status
        ctx = self.conn.ctx
        headers = tuple(message.get("headers", ()))  # any iterable (ASGI): walked at most once
        try:
            key: tuple[int, tuple[Any, ...]] | None = (status, headers)
            known = _HEADS.get(key)  # type: ignore[arg-type]
        except TypeError:  # a bytearray or a list in there: unhashable, take the slow path
            key = known = None
        if known is None:
            # A header refused here leaves the response unstarted, so it becomes a 500.
            known = _head(status, headers)
            if key is not None and len(_HEADS) < _HEADS_MAX:
                _HEADS[key] = known
        lines, self.expected_length, closes, has_server, has_date = known
        if closes:
            self.keep_alive = False
        # Two int comparisons: `status in (204, 304)` compares through a tuple.
        if status == 204 or status == 304 or self.method == "HEAD":
            self.framing = _NO_BODY
        elif self.expected_length is not None:
            self.framing = _LENGTH
        self.head = lines
        # Joined with the framing and the first body when the head leaves: one allocation
        # instead of four concatenations (hello world: 86,239 -> 85,172 instructions per
        # request on uvloop, callgrind).
        if has_server or has_date:  # the app's own replace ours
            self.stamp = (b"" if has_server else ctx.server_header) + (
                b"" if has_date else ctx.date.header
            )
        else:
            self.stamp = ctx.date.stamp
        self.state = _HEAD_HELD
        # Held back so that a head and a body sent together leave in one write with a length;
        # if the app yields before its first body (server-sent events, long polls, LLM token
        # streams), the head goes out as soon as the loop runs anything else: one callback
        # per loop turn for all the heads held meanwhile, not one per response
        # (context.ServerContext.flush_held; its hold() written out here, a call fewer).
        held = ctx.held
        if not held:
            ctx.loop.call_soon(ctx.flush_held)
        held.append(self)

    def _frame(self, first_body: bytes | None) -> bytes:
        """Decide the framing as the head leaves (first_body is set if it is the last body);
        the header lines that say it, to follow `stamp`."""
        framing = b""
        if self.framing is _UNDECIDED:
            if first_body is not None:
                # The whole body arrived in one message: a length beats chunked framing.
                self.framing = _LENGTH
                self.expected_length = len(first_body)
                framing = b"content-length: %d\r\n" % len(first_body)
            elif self.scope["http_version"] == "1.1":
                self.framing = _CHUNKED
                framing = b"transfer-encoding: chunked\r\n"
            else:
                self.framing = Framing.UNTIL_CLOSE
                self.keep_alive = False  # HTTP/1.0: the body ends when the connection does
        if not self.keep_alive:
            framing += CLOSE
        elif self.scope["http_version"] == "1.0":
            framing += KEEP_ALIVE
        self.state = _STREAMING
        return framing

    def flush_head(self) -> None:
        """Send a head the app has not followed with a body yet (e.g. a slow stream)."""
        if self.state is _HEAD_HELD:
            framing = self._frame(None)
            head, self.head = self.head, b""
            self.conn.write(b"".join((head, self.stamp, framing, b"\r\n")))

    def _body(self, body: bytes, more_body: bool) -> None:
        if body and self.framing is _NO_BODY and self.method != "HEAD":
            self._refuse_body(len(body))
        head = self.head  # b"" unless HEAD_HELD: then it leaves with this body
        if head:
            head_end = self._frame(None if more_body else body)
            self.head = b""
        framing = self.framing
        if framing is _NO_BODY:
            data = b""
        elif framing is _CHUNKED:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            self.sent_length += len(body)  # progress for stream_idle_timeout, size for the log
            if not more_body:
                data += _CHUNK_END
        else:
            data = body
            self.sent_length += len(body)
            expected = self.expected_length
            if expected is not None and self.sent_length > expected:
                if head:
                    self.conn.write(b"".join((head, self.stamp, head_end, b"\r\n")))
                self.abort()
                raise RuntimeError(
                    f"response body longer than content-length {expected}: connection closed"
                )
            if not more_body and expected is not None and self.sent_length < expected:
                if head:
                    data = b"".join((head, self.stamp, head_end, b"\r\n", data))
                self.conn.write(data)
                self.abort()
                raise RuntimeError(
                    f"response body of {self.sent_length} bytes is shorter than content-length "
                    f"{expected}: connection closed"
                )
        if not head:
            if data:
                self.conn.write(data)
        elif len(data) < 65536:  # one write, one allocation
            self.conn.write(b"".join((head, self.stamp, head_end, b"\r\n", data)))
        else:  # large bodies are not copied just to prepend a head
            self.conn.write(b"".join((head, self.stamp, head_end, b"\r\n")))
            self.conn.write(data)
        if not more_body:
            self._enter(_COMPLETE)

    def _refuse_body(self, length: int) -> NoReturn:
        """Body bytes for a 204 or 304: never written, where the client would read them as the
        start of the next response. A head still held is replaced by a 500 (the request cycle's
        fail()); one already sent can only be followed by closing the connection."""
        if self.state is not _HEAD_HELD:
            self.abort()
        raise RuntimeError(f"a {self.status} response has no body; the app sent {length} bytes")

    def abort(self) -> None:
        """End a response that cannot be finished correctly: close after what was written."""
        self.keep_alive = False
        self.conn.abort()  # first: the connection must not take a next request on this one
        self._enter(_COMPLETE)

    def error(self, status: int) -> None:
        """Answer a plain-text `status` in place of the app's response (none was started)."""
        self.status = status
        head_only = self.method == "HEAD"
        self.sent_length = 0 if head_only else len(error_body(status))
        if not self.keep_alive:
            connection = CLOSE
        elif self.scope["http_version"] == "1.0":
            connection = KEEP_ALIVE
        else:
            connection = b""
        ctx = self.conn.ctx
        self.conn.write(
            error_response(
                status,
                server_header=ctx.server_header,
                date_header=ctx.date.header,
                connection=connection,
                head_only=head_only,
            )
        )
        self._enter(_COMPLETE)
