"""A client that leaves (FIN or close) during a request: the app learns it at once, and its
send() error is the client's doing, never logged as an app error."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from aioworker.http.framing import ClientDisconnected
from tests.helpers.client import get
from tests.helpers.engine import Gate, Serve, ServerThread, send_response
from tests.helpers.wait import wait_until

# How soon the app must learn that the client left. The streaming app below writes every 20 ms
# and the disconnect watcher polls every 10 ms, so this leaves room for a loaded machine; before
# end of input counted as a disconnect, neither learnt it at all while the client kept its socket.
NOTICE_WITHIN = 1.0


def _released(server: ServerThread) -> None:
    """The connection and its request are gone: nothing kept for a client that left."""
    state = server.server.state
    wait_until(
        lambda: server.call(lambda: (state.connections, state.in_progress)) == (0, 0),
        5.0,
        "the connection and its request to be released",
    )


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _watcher_app(entered: threading.Event, noticed: threading.Event) -> Starlette:
    async def watch(request: Request) -> PlainTextResponse:
        entered.set()
        while not await request.is_disconnected():
            await asyncio.sleep(0.01)  # the app's own polling, as real watchers do
        noticed.set()
        return PlainTextResponse("gone")

    return Starlette(routes=[Route("/watch", watch)])


@pytest.mark.parametrize("how", ["half-close", "close"])
def test_starlette_is_disconnected_turns_true(
    serve: Serve, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioworker")
    entered, noticed = threading.Event(), threading.Event()
    server = serve(_watcher_app(entered, noticed))
    with server.connect() as conn:
        conn.send(get("/watch"))
        assert entered.wait(5)
        left = time.monotonic()
        if how == "half-close":
            conn.shutdown_write()  # FIN, the socket still open for reading
        else:
            conn.close()
        assert noticed.wait(NOTICE_WITHIN), "request.is_disconnected() stayed False"
        took = time.monotonic() - left
    assert took < NOTICE_WITHIN
    _released(server)
    assert _errors(caplog) == []


def test_streaming_app_stops_at_the_next_write(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette's StreamingResponse (ASGI spec 2.4) stops when send() fails; the ClientDisconnect
    it raises from that error is a debug line, not an error with a traceback."""
    caplog.set_level(logging.DEBUG, logger="aioworker")
    stopped = threading.Event()

    async def events() -> AsyncIterator[bytes]:
        try:
            for i in range(10_000):
                yield b"data: %d\n\n" % i
                await asyncio.sleep(0.02)
        finally:
            stopped.set()

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    server = serve(Starlette(routes=[Route("/events", stream)]))
    with server.connect() as conn:
        conn.send(get("/events"))
        response = conn.sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 "), response
        conn.shutdown_write()
        assert stopped.wait(NOTICE_WITHIN), "the stream went on after the client left"
    _released(server)
    assert _errors(caplog) == []
    assert any("client went away" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("how", ["half-close", "close"])
def test_an_upload_abandoned_midway_is_not_an_app_error(
    serve: Serve, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette raises its ClientDisconnect (no OSError) when receive() says http.disconnect in
    the middle of a body; an app told that the client left and then raising is the client's
    doing, a debug line, never an error with a traceback."""
    caplog.set_level(logging.DEBUG, logger="aioworker")
    read: list[int] = []
    ended = threading.Event()

    async def upload(request: Request) -> PlainTextResponse:
        try:
            async for chunk in request.stream():
                read.append(len(chunk))
        finally:
            ended.set()
        return PlainTextResponse("stored")

    server = serve(Starlette(routes=[Route("/upload", upload, methods=["POST"])]))
    with server.connect() as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        conn.send(b"x" * 1000)
        wait_until(lambda: sum(read) == 1000, 5.0, "the first part of the body read")
        if how == "half-close":
            conn.shutdown_write()
        else:
            conn.close()
        assert ended.wait(5)
    _released(server)
    assert _errors(caplog) == []
    assert any("client went away" in r.getMessage() for r in caplog.records)


def test_receive_and_send_after_the_client_left(serve: Serve) -> None:
    """An app busy elsewhere when the client sent FIN learns it at its next receive() or send()."""
    outcome: list[Any] = []
    gate = Gate()
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        outcome.append((await receive())["body"])
        await gate.hold()
        outcome.append((await receive())["type"])
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except ClientDisconnected:
            outcome.append("send failed")
        done.set()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        assert gate.entered.wait(5)
        conn.shutdown_write()
        # Released at the FIN, while the app is still busy: before, a half-closed connection
        # stayed open for the response and the app was told nothing.
        state = server.server.state
        wait_until(lambda: server.call(lambda: state.connections) == 0, 5.0, "release at FIN")
        gate.open()
        assert done.wait(5)
        assert conn.read_until_closed() == b""
    assert outcome == [b"hi", "http.disconnect", "send failed"]
    _released(server)


def test_pipelined_request_then_end_of_input_is_a_disconnect(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """`printf 'GET / ...' | nc -q0`: the request is taken as abandoned, as uvicorn does
    (docs/http.md); the requests queued behind it are never started."""
    caplog.set_level(logging.DEBUG, logger="aioworker")
    seen: list[str] = []
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        await gate.hold()
        await send_response(send, 200, b"never read")  # raises ClientDisconnected

    server = serve(app)
    with server.connect() as conn:
        conn.send(get("/first") + get("/second"))
        conn.shutdown_write()
        assert gate.entered.wait(5)
        state = server.server.state
        wait_until(lambda: server.call(lambda: state.connections) == 0, 5.0, "release at FIN")
        gate.open()
        assert conn.read_until_closed() == b""
    _released(server)
    assert seen == ["/first"]
    assert _errors(caplog) == []


def test_app_error_after_a_disconnect_is_still_logged(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Only what the disconnect caused is quiet: a bug that is not about the client is an error."""
    caplog.set_level(logging.DEBUG, logger="aioworker")
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await receive()  # http.disconnect
        done.set()
        raise KeyError("DATABASE_URL")

    server = serve(app)
    with server.connect() as conn:
        conn.send(get("/"))
        conn.shutdown_write()
        assert done.wait(5)
    _released(server)
    wait_until(lambda: _errors(caplog), 5.0, "the app's KeyError to be logged")
