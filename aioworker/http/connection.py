"""One HTTP/1.1 connection: the transport, keep-alive, pipelining, timeouts and flow control.

Requests are parsed by parser.py and answered by a cycle.RequestCycle each, strictly in order;
the cycle builds its scope, runs the app and keeps its own deadlines, the connection asks it.
Timeouts are not timers per connection: the server's tick calls `check_timeouts(now)` a few
times per shortest timeout, so a keep-alive request costs one float store instead of creating
and cancelling a TimerHandle (~1.5 us on uvloop) per request. All times are time.monotonic():
uvloop's loop.time() is cached per loop turn at millisecond resolution, too coarse for the
latency histogram.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import Final, cast

from aioworker._types import HTTPScope
from aioworker.http.context import ServerContext
from aioworker.http.cycle import RequestCycle, ResponseState
from aioworker.http.parser import Body, ParseError, RequestHead, RequestParser
from aioworker.http.response import error_response
from aioworker.http.upgrade import take_over

__all__ = ["HttpProtocol"]

logger = logging.getLogger("aioworker.http")

# What the connection-level deadline means when it passes.
_NONE: Final = 0  # a request is being answered: no connection deadline
_IDLE: Final = 1  # between requests (or before the first byte): close quietly
_HEAD: Final = 2  # a request head is arriving: 408, then close
_WAITING: Final = (_IDLE, _HEAD)  # no request taken on yet: evictable at max_connections
_LINGER: Final = 3  # closing after an error: stop discarding input, close

# Pipelined requests queued behind the one being answered before reading pauses.
_MAX_PIPELINE: Final = 16
# Seconds to keep reading and discarding after an error response, so that closing while the
# client is still sending does not turn into a TCP reset that destroys the response (RFC 9112
# section 9.6, nginx's lingering_close).
_LINGER_SECONDS: Final = 2.0
# Seconds an idle connection stays open once a graceful stop begins (see shutdown()).
_DRAIN_IDLE: Final = 0.5
_NOT_STARTED: Final = ResponseState.NOT_STARTED
_COMPLETE: Final = ResponseState.COMPLETE


class HttpProtocol(asyncio.Protocol):
    """asyncio protocol for one client connection."""

    __slots__ = (
        "client",
        "ctx",
        "cycle",
        "deadline",
        "deadline_kind",
        "drain_waiter",
        "eof",
        "loop",
        "no_more",
        "parser",
        "parsing",
        "paused_at",
        "pending_error",
        "pipeline",
        "reading_paused",
        "registered",
        "scheme",
        "scope_base",
        "server",
        "settings",
        "transport",
        "trusted",
        "write_paused",
    )

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        settings = self.settings = ctx.settings
        self.parser = RequestParser(
            max_url_bytes=settings.max_url_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_body_bytes=settings.max_body_bytes,
        )
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self.trusted = False
        self.scope_base: HTTPScope | None = None  # cycle._scope's, per connection
        self.cycle: RequestCycle | None = None  # the request being answered
        self.parsing: RequestCycle | None = None  # the request whose body is arriving
        self.pipeline: deque[RequestCycle] = deque()
        self.pending_error: ParseError | None = None
        self.no_more = False  # no further requests are read on this connection
        self.eof = False  # the client has finished sending (FIN received)
        self.reading_paused = False
        self.write_paused = False
        self.paused_at = 0.0  # monotonic time writing last paused, for send_timeout
        self.drain_waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.deadline_kind = _NONE
        self.registered = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        ctx = self.ctx
        settings = self.settings
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client = (str(peer[0]), int(peer[1]))
        address = self.client[0] if self.client else ""
        self.trusted = ctx.proxy.trusts(address or None)
        # Not refused while closing: the listener is closed by then, so this connection was
        # accepted before (uvloop defers connection_made); it gets one answer, with close.
        # Over a limit it is answered at once rather than left hanging.
        cap = settings.max_connections_per_client
        if cap and address and not self.trusted and ctx.clients.get(address, 0) >= cap:
            self._refuse(503)
            transport.close()
            return
        if len(ctx.connections) >= settings.max_connections and not ctx.make_room():
            self._refuse(503)
            transport.close()
            return
        ctx.connections[self] = None
        ctx.clients[address] = ctx.clients.get(address, 0) + 1
        ctx.state.connections += 1
        self.registered = True
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple) and sockname:
            self.server = (str(sockname[0]), int(sockname[1]))
        elif isinstance(sockname, str) and sockname:
            self.server = (sockname, None)
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self.deadline_kind = _IDLE
        self.deadline = monotonic() + self.settings.header_timeout

    def _unregister(self) -> None:
        if self.registered:
            self.registered = False
            ctx = self.ctx
            del ctx.connections[self]
            address = self.client[0] if self.client else ""
            left = ctx.clients[address] - 1
            if left:
                ctx.clients[address] = left
            else:
                del ctx.clients[address]
            ctx.state.connections -= 1
            if ctx.closing and not ctx.connections:
                ctx.drained.set()

    @property
    def evictable(self) -> bool:
        """Idle (before its first byte, between requests) or with a request head still
        arriving: closing it loses no request the server took on."""
        return self.cycle is None and not self.pipeline and self.deadline_kind in _WAITING

    def evict(self) -> None:
        """Close to make room for a new connection (at max_connections)."""
        self._unregister()
        self.no_more = True
        self.deadline_kind = _NONE
        if self.transport is not None:
            self.transport.abort()  # nothing to flush: idle, or a head half sent

    def connection_lost(self, exc: Exception | None) -> None:
        self._unregister()
        self.no_more = True
        self.deadline_kind = _NONE
        cycle = self.cycle
        if cycle is not None:
            cycle.connection_lost()
        self.pipeline.clear()
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        # End of input is the client leaving, even between a request and its response, as
        # uvicorn, nginx and gunicorn take it: the app learns it now (http.disconnect, send()
        # fails), not after writes into nothing. A client that half-closes after a pipelined
        # request (`printf ... | nc -q0`) therefore gets no answer (docs/http.md). The transport
        # closes once what was already written is flushed.
        self.no_more = True
        self.eof = True
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnect()
        return False

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_at = monotonic()

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.ctx.state.bytes_in += len(data)
        if self.no_more and self.parsing is None:
            # After Connection: close, an error or during a lingering close. The body of a
            # request still arriving (parsing) is read even on a closing connection: an
            # HTTP/1.0 or Connection: close POST whose body came after its head got 408.
            return
        error: ParseError | None = None
        try:
            events = self.parser.feed(data)
        except ParseError as exc:
            # Requests completed before the bad bytes are still answered first.
            error, events = exc, exc.events
        for event in events:
            kind = event.__class__
            if kind is RequestHead:
                if not self.no_more:
                    self._on_head(event)  # type: ignore[arg-type]
                else:  # pipelined after a request that closes the connection: never served
                    self.parsing = None
            elif kind is Body:
                parsing = self.parsing
                if parsing is not None and parsing.state is not _COMPLETE:
                    parsing.feed_body(event.data)  # type: ignore[union-attr]
                    if len(parsing.body) > self.settings.high_water and not self.reading_paused:
                        self._pause_reading()
            else:
                parsing = self.parsing
                if parsing is not None:
                    self.parsing = None
                    parsing.end_body()
        if error is not None:
            if self.no_more and self.parsing is None:
                # Bytes after a request that closes the connection (llhttp refuses them): they
                # are never read as a request, so they get no answer either.
                return
            self._reject(error)
            return
        if self.parser.in_head:
            # Not while a request is answered: its 408 would take that response's place. A
            # pipelined head is timed from the first bytes that arrive once the connection is idle.
            if self.deadline_kind != _HEAD and self.cycle is None:
                self.deadline_kind = _HEAD
                self.deadline = monotonic() + self.settings.header_timeout
        elif self.deadline_kind == _HEAD:
            self.deadline_kind = _NONE

    # -- requests -------------------------------------------------------------------------

    def _on_head(self, head: RequestHead) -> None:
        if head.upgrade and self.cycle is None and take_over(self, head):
            # A WebSocket handshake: websocket.py answers it and owns the transport from now on
            # (or refused it and closes). Nothing more is read here.
            self.no_more = True
            self.parsing = None
            self.deadline_kind = _NONE
            return
        cycle = RequestCycle(head, self)
        if not cycle.keep_alive:
            self.no_more = True  # bytes after a closing request are never read as a request
        self.parsing = cycle
        if self.cycle is None:
            self.cycle = cycle
            self.deadline_kind = _NONE
            cycle.begin()
        else:
            self.pipeline.append(cycle)
            if len(self.pipeline) >= _MAX_PIPELINE and not self.reading_paused:
                self._pause_reading()

    # -- called by the cycle --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.ctx.state.bytes_out += len(data)
            transport.write(data)
        elif self.cycle is not None:
            # The client is gone (the write that met its reset closed the transport): the app
            # learns it at its next send(). Otherwise a streaming app never yields again, since
            # a closing transport never pauses writing, and streams on into nothing.
            self.cycle.disconnect()

    async def drain(self) -> None:
        """Wait while the client reads slower than the app writes."""
        if self.write_paused and self.registered:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.drain_waiter = self.loop.create_future()
            await waiter

    def resume_reading(self) -> None:
        if self.reading_paused:
            parsing = self.parsing
            if (parsing is None or len(parsing.body) <= self.settings.high_water) and len(
                self.pipeline
            ) < _MAX_PIPELINE:
                self.reading_paused = False
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    transport.resume_reading()

    def abort(self) -> None:
        """Close after what was written so far: the response cannot be completed correctly."""
        self.no_more = True
        if self.transport is not None:
            self.transport.close()

    def response_complete(self, cycle: RequestCycle) -> None:
        if cycle is not self.cycle:
            return
        self.cycle = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not cycle.body_complete:
            # The app answered without reading the whole body: the rest of it would have to be
            # read and thrown away to find the next request; closing is simpler and safe.
            self._linger()
            return
        if not cycle.keep_alive and (self.pipeline or self.pending_error is not None):
            # This response said "connection: close": nothing may follow it (RFC 9112 section
            # 9.6), not even answers to requests the client has already pipelined.
            self.pipeline.clear()
            self.pending_error = None
            self._linger()
            return
        if self.pipeline:
            self.cycle = cycle = self.pipeline.popleft()
            self.deadline_kind = _NONE
            cycle.begin()
            self.resume_reading()
            return
        if self.pending_error is not None:
            self._send_error(self.pending_error)
            return
        if not cycle.keep_alive or self.no_more or self.ctx.closing:
            transport.close()
            return
        self.deadline_kind = _IDLE
        # From when the response was counted: a clock reading fewer per request.
        self.deadline = cycle.ended + self.settings.keepalive_timeout
        if self.reading_paused:
            self.resume_reading()

    # -- errors, timeouts, shutdown -------------------------------------------------------

    def _reject(self, error: ParseError) -> None:
        """Bad input: answer its status once every earlier response is out, then close."""
        logger.debug("bad request from %s: %d %s", self.client, error.status, error.reason)
        self.no_more = True
        parsing = self.parsing
        self.parsing = None  # the parser is dead: nothing more is read
        if parsing is not None and parsing is self.cycle:
            # The body of the request being answered is bad (e.g. an invalid chunk size).
            parsing.fail(error.status)
            parsing.disconnect()
            return
        if parsing is not None and parsing in self.pipeline:
            # Queued behind the current request with a bad body: never started, since its
            # body can never complete; the error response takes its place.
            self.pipeline.remove(parsing)
        if self.cycle is not None:
            self.pending_error = error
            return
        self._send_error(error)

    def _send_error(self, error: ParseError) -> None:
        self.pending_error = None
        self.no_more = True
        self._refuse(error.status)
        self._linger()

    def _refuse(self, status: int) -> None:
        """Answer `status` without a request cycle (bad input, too many connections)."""
        ctx = self.ctx
        ctx.state.count_response(status)
        self.write(
            error_response(status, server_header=ctx.server_header, date_header=ctx.date.header)
        )

    def _linger(self) -> None:
        self.parsing = None  # whatever still arrives is discarded, even a body in progress
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.eof:  # nothing more will arrive to drain: close now, not after _LINGER_SECONDS
            transport.close()
            return
        self.no_more = True
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is already gone (ENOTCONN on asyncio's transport)
                transport.close()
                return
            self.deadline_kind = _LINGER
            self.deadline = monotonic() + _LINGER_SECONDS
        else:
            transport.close()

    def _pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.reading_paused = True
            transport.pause_reading()

    def check_timeouts(self, now: float) -> None:
        """Called by the server's tick: act on whatever deadline has passed."""
        transport = self.transport
        if transport is None:
            return
        send_timeout = self.settings.send_timeout
        if self.write_paused and send_timeout and now - self.paused_at > send_timeout:
            # Before the closing check: close() would wait for a buffer this client never reads.
            logger.info("%s read nothing for send_timeout %gs: closed", self.client, send_timeout)
            transport.abort()
            return
        if transport.is_closing():
            return
        kind = self.deadline_kind
        if kind != _NONE and now >= self.deadline:
            if kind == _HEAD:
                self._send_error(ParseError(408, "request head not received in time"))
                self.deadline_kind = _NONE
                transport.close()
            else:
                transport.close()
            return
        cycle = self.cycle
        if cycle is not None:
            cycle.check_deadlines(now)

    def shutdown(self) -> None:
        """Graceful stop: close now if idle, else after the response in progress."""
        if self.deadline_kind == _LINGER:
            # Its error response is out; draining the client's input can stop early.
            if self.transport is not None:
                self.transport.close()
            return
        cycle = self.cycle
        if cycle is None:
            if self.deadline_kind == _IDLE:
                # Idle (just accepted, or between requests): closing now would reset a request
                # the client is sending at this instant, and a keep-alive client under load
                # sends one every few milliseconds (253 failed of 491,351 requests over 4
                # reloads with wrk when these were closed at once). A request that arrives in
                # the next moment is answered with "connection: close"; the tick closes the
                # connection if none does.
                self.deadline = min(self.deadline, monotonic() + _DRAIN_IDLE)
            # A head still arriving is answered with "connection: close" (ctx.closing);
            # header_timeout bounds the wait.
            return
        self.no_more = True
        if cycle.state is _NOT_STARTED and not self.pipeline:
            # Its response says "connection: close": a client that would reuse the connection
            # learns it is closing instead of racing a new request against the close.
            cycle.keep_alive = False

    def force_close(self) -> None:
        """The graceful timeout passed: cancel the app and close."""
        if self.cycle is not None:
            self.cycle.cancel()
        if self.transport is not None:
            self.transport.close()
