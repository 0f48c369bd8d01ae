"""The ASGI request cycle: one request's scope, receive(), the app call, deadlines and counting.

The connection (connection.py) owns the socket, keep-alive and the order of requests; a
RequestCycle owns what the ASGI spec makes per request: its scope, the body handed to the app,
its response (a framing.Response: send(), the ResponseState, the framing) and what ends the
app early (its deadline, a stalled body, the client leaving). The connection only asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Protocol
from urllib.parse import unquote_to_bytes

from aioworker._types import ASGIApp, ASGIVersions, HTTPScope, Message
from aioworker.http import framing
from aioworker.http.context import ServerContext
from aioworker.http.framing import ClientDisconnected, Framing, Response, ResponseState
from aioworker.http.parser import RequestHead

__all__ = ["ClientDisconnected", "Connection", "RequestCycle", "ResponseState"]

logger = logging.getLogger("aioworker.error")
http_logger = logging.getLogger("aioworker.http")

ASGI_VERSION: Final[ASGIVersions] = {"version": "3.0", "spec_version": "2.4"}

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# Enum members through module names: `Framing.UNDECIDED` costs ~200 ns on 3.11, a global ~10.
_NOT_STARTED: Final = ResponseState.NOT_STARTED
_HEAD_HELD: Final = ResponseState.HEAD_HELD
_COMPLETE: Final = ResponseState.COMPLETE
_UNDECIDED: Final = Framing.UNDECIDED
# A byte tested by its value: `b"%" in raw_path` first tries the operand as an int, raises and
# clears a formatted TypeError, ~2,100 instructions; `0x25 in raw_path` costs ~100.
_PERCENT: Final = ord("%")


class Connection(framing.Connection, Protocol):
    """What a request cycle needs from its connection."""

    ctx: ServerContext
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    trusted: bool
    scope_base: HTTPScope | None  # built by the first request's _scope

    def resume_reading(self) -> None: ...
    def response_complete(self, cycle: RequestCycle) -> None: ...


def _base_scope(conn: Connection) -> HTTPScope:
    """What every request's scope on `conn` shares, in the order of the ASGI spec's keys."""
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": "1.1",
        "server": conn.server,
        "client": conn.client,
        "scheme": conn.scheme,
        "method": "GET",
        "root_path": conn.ctx.root_path,
        "path": "",
        "raw_path": b"",
        "query_string": b"",
        "headers": [],
        "state": {},
    }


def _scope(head: RequestHead, conn: Connection) -> HTTPScope:
    ctx = conn.ctx
    raw_path = head.raw_path
    if _PERCENT in raw_path:
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw_path.decode("utf-8", "replace")
    # A copy of the connection's scope with the request's fields set: a 13-key dict display
    # inserts every key (~700 ns), a copy of a dict of the same shape is one memcpy (~480 ns
    # with the stores below).
    base = conn.scope_base
    if base is None:
        base = conn.scope_base = _base_scope(conn)
    scope = base.copy()
    if head.forwarded and conn.trusted:  # the parser saw a proxy header
        scope["client"], scope["scheme"] = ctx.proxy.resolve(head.headers, conn.client, conn.scheme)
    root_path = ctx.root_path
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope["http_version"] = head.http_version
    scope["method"] = head.method
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = head.query_string
    scope["headers"] = head.headers
    # A copy per request (ASGI lifespan spec), but most apps keep no lifespan state: a new
    # empty dict is cheaper than a method call on an empty one.
    scope["state"] = ctx.lifespan_state.copy() if ctx.lifespan_state else {}
    return scope


def _from_disconnect(exc: BaseException) -> bool:
    """Whether `exc` comes from the client leaving: an OSError (ClientDisconnected, a reset),
    or an exception raised while handling one, or a group of only such exceptions."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return True
        # Task groups (anyio, asyncio.TaskGroup) wrap what their tasks raised.
        group = getattr(exc, "exceptions", None)
        if isinstance(group, tuple) and group and isinstance(exc, BaseException):
            return all(isinstance(e, BaseException) and _from_disconnect(e) for e in group)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


class RequestCycle(Response):
    """One request from its head to the end of its response."""

    __slots__ = (
        "body",
        "body_complete",
        "cancelled",
        "conn",
        "delivered",
        "disconnected",
        "ended",
        "idle_mark",
        "idle_since",
        "method",
        "path",
        "scope",
        "started",
        "task",
        "waiter",
        "waiting_for_continue",
        "waiting_since",
    )

    conn: Connection

    def __init__(self, head: RequestHead, conn: Connection) -> None:
        self.scope = scope = _scope(head, conn)
        self.conn = conn
        self.method = head.method
        self.path = scope["path"]
        self.started = 0.0  # time.monotonic() once begun: queued behind a pipeline until then
        self.ended = 0.0  # time.monotonic() once counted: the connection's keep-alive starts
        # The Response half. A request that arrives once a graceful stop began is answered,
        # then the connection closes.
        self.keep_alive = head.keep_alive and not conn.ctx.closing
        self.state = _NOT_STARTED
        self.framing = _UNDECIDED
        self.expected_length = None
        self.sent_length = 0
        self.status = 0
        self.head = self.stamp = b""
        self.waiting_for_continue = head.expect_continue
        # b"" until body bytes arrive (feed_body): no bytearray for the many requests without.
        self.body: bytes | bytearray = b""
        self.body_complete = False
        self.delivered = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        # monotonic time since when the app waits for body bytes (for body_timeout), 0 if not.
        self.waiting_since = 0.0
        # Body bytes sent when the tick last saw them change, and since when (stream idleness).
        self.idle_mark = 0
        self.idle_since = 0.0
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False  # the server cancelled the app (deadline or shutdown)

    # -- the life of the request --------------------------------------------------------

    def begin(self) -> None:
        """Its turn on the connection: count it in progress, then run the app or shed it."""
        ctx = self.conn.ctx
        self.started = time.monotonic()
        state = ctx.state
        state.request_started(self)
        if state.in_progress > ctx.settings.max_requests_in_progress:
            # Shed load at once: a queue here would only turn overload into timeouts.
            self.fail(503)
            return
        self.task = ctx.loop.create_task(self.run(ctx.app))

    def _enter(self, state: ResponseState) -> None:
        """Response._enter; once COMPLETE, the request is counted and the connection handed back."""
        self.state = state
        if state is _COMPLETE:
            self.head = b""
            self._account()
            self.conn.response_complete(self)
            # A receive() already waiting (a framework's disconnect watcher) now returns
            # http.disconnect, as one called after the response would (ASGI HTTP spec).
            if self.waiter is not None:
                self.wake()

    def _account(self) -> None:
        """Count the request, and log it if it was answered (once, however often asked)."""
        ctx = self.conn.ctx
        answered = self.state is _COMPLETE
        self.ended = now = time.monotonic()
        elapsed = now - self.started
        counted = ctx.state.request_ended(self, self.status if answered else None, elapsed)
        if counted and answered and ctx.access is not None:
            ctx.access.log(self, elapsed)

    def connection_lost(self) -> None:
        self.disconnect()
        self._account()

    def check_deadlines(self, now: float) -> None:
        """Asked by the connection's tick: cancel an app past its deadline, 408 a stalled body.

        request_timeout bounds the time to the response head only; once the response has
        started, an app that sends nothing for stream_idle_timeout is cancelled, so a stream
        lives as long as it makes progress (a client that does not read is the connection's
        send_timeout). Idle time is seen by the tick, to within one tick, so that send()
        stores no clock reading.
        """
        settings = self.conn.ctx.settings
        state = self.state
        if state is _NOT_STARTED:
            timeout = settings.request_timeout
            if timeout and now - self.started > timeout:
                if not self.cancelled and self.task is not None and not self.task.done():
                    http_logger.warning(
                        "%s %s sent no response head within request_timeout %gs: cancelled",
                        self.method,
                        self.path,
                        timeout,
                    )
                    self.cancel()
                return
        elif state is not _COMPLETE:
            idle = settings.stream_idle_timeout
            sent = self.sent_length
            if sent != self.idle_mark or not self.idle_since or self.conn.write_paused:
                self.idle_mark = sent
                self.idle_since = now
            elif idle and now - self.idle_since > idle and not self.cancelled:
                http_logger.warning(
                    "%s %s sent nothing for stream_idle_timeout %gs: cancelled, connection closed",
                    self.method,
                    self.path,
                    idle,
                )
                self.cancel()
                return
        if self.waiting_since and now - self.waiting_since > settings.body_timeout:
            http_logger.info("request body from %s stalled: closing", self.conn.client)
            self.fail(408)
            self.disconnect()
            self.conn.abort()

    def cancel(self) -> None:
        """The server stops the app (deadline or shutdown): 504 if nothing was sent, else abort."""
        task = self.task
        if task is not None and not task.done():
            self.cancelled = True
            task.cancel()

    # -- fed by the connection ----------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        body = self.body
        if body:
            body += data  # a bytearray: extended in place
        else:
            self.body = bytearray(data)
        self.wake()

    def end_body(self) -> None:
        self.body_complete = True
        if self.waiter is not None:  # nearly always None: spare a call per request
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
            if not self.disconnected and self.state is _NOT_STARTED:
                self.conn.write(_CONTINUE)
        if not self.disconnected and self.state is not _COMPLETE:
            if not self.body and not self.body_complete:
                self.conn.resume_reading()
                await self._wait(for_body=True)
            elif self.delivered:
                await self._wait(for_body=False)  # nothing left but a disconnect to report
        if self.disconnected or self.state is _COMPLETE:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        more_body = not self.body_complete
        self.body = b""
        if more_body:
            self.conn.resume_reading()
        else:
            self.delivered = True
        return {"type": "http.request", "body": body, "more_body": more_body}

    # -- running the app ----------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            # HTTPScope is a Scope; not said with cast(), a function call per request.
            await app(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            # The request's deadline passed or the server stopped waiting: 504, else 503.
            self.fail(504 if self.cancelled else 503)
            raise
        except BaseException as exc:
            if self.disconnected and _from_disconnect(exc):
                # The client left and the app let send()'s error out (Starlette turns it into
                # its own ClientDisconnect): the client's doing, not the app's bug.
                logger.debug("client went away during %s %s", self.method, self.path)
            else:
                logger.exception("exception in ASGI app for %s %s", self.method, self.path)
            self.fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if self.state is not _COMPLETE:
                # An app that stops once the client is gone (Starlette's StreamingResponse
                # does) is not at fault: nothing to log.
                if self.state is not _NOT_STARTED and not self.disconnected:
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

    def fail(self, status: int = 500) -> None:
        """The app cannot answer: the server answers `status` if nothing was sent, else aborts."""
        state = self.state
        if state is _COMPLETE:
            return
        if self.disconnected:
            # Nobody to answer. The connection may still be half-open (the client sent FIN):
            # close it, or it would stay registered with no request and no timeout.
            self.conn.abort()
            return
        if state is not _NOT_STARTED and state is not _HEAD_HELD:
            self.abort()
            return
        self.head = b""  # a head held back never left: the error response takes its place
        # Unread body bytes would have to be read and thrown away to find the next request.
        self.keep_alive = self.keep_alive and self.body_complete
        self.error(status)
