"""The frame side of one WebSocket: frames in and out, messages, flow control and keepalive.

websockets' sans-IO `Protocol` parses and builds the frames (RFC 6455) and answers pings and
close frames; `WsTransport` is the asyncio protocol around it: it reassembles fragmented
messages and checks their UTF-8, queues them for the app and stops reading when the app falls
behind, lets a sender wait for the socket to drain, sends the keepalive pings and drops a
client that does not answer our close. websocket.py builds the ASGI cycle on top of it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections import deque
from typing import Final, cast

from aioworker._types import Message
from aioworker.http.context import ServerContext

try:
    from websockets.frames import Frame, Opcode
    from websockets.protocol import Protocol as Frames
    from websockets.protocol import State as FrameState
except ImportError:  # the ws extra is not installed: handshakes get 501
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "WsState", "WsTransport"]

ws_logger = logging.getLogger("aioworker.websocket")
# websockets logs "connection closed" at INFO for every connection; its warnings still show.
frames_logger = logging.getLogger("aioworker.websocket.frames")
frames_logger.setLevel(logging.WARNING)

# Seconds the client has to answer our close frame before the connection is dropped; the
# figure websockets' own servers use (close_timeout).
CLOSE_TIMEOUT: Final = 10.0


class WsState(enum.Enum):
    """Where the WebSocket is; only ever forward.

    HANDSHAKE (the app has not answered) -> OPEN (websocket.accept: 101 sent) or DENYING
    (websocket.http.response.start) -> CLOSED (the app sent close, the client left, or the
    denial is out): send() raises ClientDisconnected from then on.
    """

    HANDSHAKE = "handshake"
    DENYING = "denying"
    OPEN = "open"
    CLOSED = "closed"


_OPEN: Final = WsState.OPEN
_CLOSED: Final = WsState.CLOSED


class WsTransport(asyncio.Protocol):
    """The frame side of one WebSocket; `websocket.WebSocket` adds the server's and the app's."""

    # Slots: an idle WebSocket is mostly this object; a __dict__ would add ~1 KiB to each.
    __slots__ = (
        "close_deadline",
        "ctx",
        "disconnect_code",
        "disconnect_reason",
        "drain_waiter",
        "early",
        "fragment_text",
        "fragments",
        "frames",
        "incoming",
        "last_ping",
        "path",
        "ping_payload",
        "ping_sent",
        "reading_paused",
        "settings",
        "state",
        "transport",
        "waiter",
        "write_paused",
    )

    def __init__(self, ctx: ServerContext, transport: asyncio.Transport, path: str) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.transport = transport
        self.path = path  # for log lines
        self.state = WsState.HANDSHAKE
        self.frames: Frames | None = None
        self.early = bytearray()  # bytes that came before the app accepted
        self.fragments: list[bytes] = []
        self.fragment_text = False
        self.incoming: deque[Message] = deque()
        self.disconnect_code = 1006
        self.disconnect_reason = ""
        self.waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.ping_sent = 0.0  # monotonic time of the unanswered keepalive ping, 0 if none
        self.ping_payload = b""
        self.last_ping = 0.0
        self.close_deadline = 0.0

    # -- asyncio.Protocol (the transport was handed over: connection_made is not called) -----

    def data_received(self, data: bytes) -> None:
        self.ctx.state.bytes_in += len(data)
        frames = self.frames
        if frames is None:
            # Before the app accepts (a client should wait for the 101): kept, and reading paused.
            self.early += data
            if not self.reading_paused:
                self.reading_paused = True
                self.transport.pause_reading()
            return
        frames.receive_data(data)
        self._handle_frames(frames)

    def eof_received(self) -> bool:
        frames = self.frames
        if frames is not None:
            frames.receive_eof()
            self._handle_frames(frames)
        return False

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # -- frames in -------------------------------------------------------------------------

    def _handle_frames(self, frames: Frames) -> None:
        state = self.ctx.state
        for event in frames.events_received():
            frame = cast(Frame, event)  # a server-side Protocol only produces frames
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._message(opcode is Opcode.TEXT, cast(bytes, frame.data))
                else:
                    self.fragment_text = opcode is Opcode.TEXT
                    self.fragments = [cast(bytes, frame.data)]
            elif opcode is Opcode.CONT:
                self.fragments.append(cast(bytes, frame.data))
                if frame.fin:
                    data = b"".join(self.fragments)
                    self.fragments = []
                    self._message(self.fragment_text, data)
            elif opcode is Opcode.PONG:
                if self.ping_sent and frame.data == self.ping_payload:
                    self.ping_sent = 0.0
            elif opcode is Opcode.CLOSE:
                received = frames.close_rcvd
                if received is not None:
                    self._disconnected(received.code, received.reason)
            if frames.state is not FrameState.OPEN and opcode is not Opcode.CLOSE:
                break  # failed (1007) while handling this frame: the rest is not read
        state.bytes_out += self._flush()
        if frames.close_expected() and not self.close_deadline:
            self.close_deadline = time.monotonic() + CLOSE_TIMEOUT
            sent = frames.close_sent
            if sent is not None and frames.close_rcvd is None:
                # We failed the connection (1002, 1007, 1009, 1011): the app hears that code.
                self._disconnected(sent.code, sent.reason)

    def _message(self, text: bool, data: bytes) -> None:
        frames = self.frames
        assert frames is not None
        self.ctx.state.ws_messages_in += 1
        if text:
            try:
                message: Message = {"type": "websocket.receive", "text": data.decode("utf-8")}
            except UnicodeDecodeError:
                frames.fail(1007, "invalid UTF-8 in a text message")  # RFC 6455 section 8.1
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.incoming.append(message)
        if len(self.incoming) >= self.settings.ws_max_queue and not self.reading_paused:
            # The app reads slower than the client sends: stop reading, TCP pushes back.
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def _flush(self) -> int:
        """Write what the frame layer has to send; its end-of-stream mark closes the socket."""
        frames = self.frames
        if frames is None:
            return 0
        sent = 0
        transport = self.transport
        for data in frames.data_to_send():
            if data:
                if not transport.is_closing():
                    transport.write(data)
                    sent += len(data)
            else:
                transport.close()  # RFC 6455 section 7.1.1: the server closes TCP first
        return sent

    # -- waking the app ----------------------------------------------------------------------

    def _disconnected(self, code: int, reason: str) -> None:
        """No more sends: the first code known (the app's, the client's, ours) is the app's."""
        if self.disconnect_code == 1006:
            self.disconnect_code, self.disconnect_reason = code, reason
        if self.state is _OPEN:
            self.ctx.state.websockets -= 1
        self.state = _CLOSED
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the server's tick, once the app accepted ----------------------------------------------

    def _tick(self, now: float) -> None:
        """After the handshake: the close timeout, then the keepalive ping and its answer."""
        if self.close_deadline:
            if now > self.close_deadline:
                self.transport.abort()  # the client never answered our close frame
            return
        frames = self.frames
        if frames is None or frames.state is not FrameState.OPEN:
            return
        settings = self.settings
        if self.ping_sent:
            if settings.ws_ping_timeout and now - self.ping_sent > settings.ws_ping_timeout:
                ws_logger.info("WebSocket %s: keepalive ping unanswered, closing", self.path)
                frames.fail(1011, "keepalive ping timeout")
                self._flush()
                self._disconnected(1011, "keepalive ping timeout")
        elif settings.ws_ping_interval and now - self.last_ping >= settings.ws_ping_interval:
            self.ping_payload = os.urandom(4)
            self.ping_sent = self.last_ping = now
            frames.send_ping(self.ping_payload)
            self._flush()
