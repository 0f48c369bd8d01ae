"""Limits and timeouts: slowloris, idle bodies, keep-alive, connection and request caps, deadlines,
graceful shutdown, and app exceptions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
import time
from typing import Any

import pytest

from tests.helpers.client import IncompleteResponse, RawConn
from tests.helpers.engine import (
    FAST,
    Gate,
    echo_app,
    gated,
    hello_app,
    path_app,
    read_body,
    send_response,
)
from tests.helpers.wait import wait_until

SHORT = 0.3  # seconds: the timeout under test
SLACK = 2.0  # seconds: how late the server may act on a loaded 2-core CI machine


def _timed_close(conn: RawConn) -> tuple[float, bytes]:
    start = time.monotonic()
    data = conn.read_until_closed(timeout=SHORT + SLACK)
    return time.monotonic() - start, data


# --------------------------------------------------------------------------- header timeout


def test_slowloris_trickle_gets_408(serve: Any) -> None:
    server = serve(hello_app, dataclasses.replace(FAST, header_timeout=SHORT))
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        # One header byte at a time, each well inside the timeout, until the server acts.
        conn.sock.settimeout(SHORT / 5)
        answer = b""
        while time.monotonic() - start < SHORT + SLACK:
            try:
                conn.sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer = conn.sock.recv(65536)
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - start
        assert answer, "server never answered the trickle"
        conn.buf += answer
        response = conn.read_response()
        assert response.status == 408
        conn.read_until_closed()
    assert SHORT * 0.9 <= elapsed <= SHORT + SLACK
    assert server.get().status == 200


def test_partial_head_gets_408(serve: Any) -> None:
    server = serve(hello_app, dataclasses.replace(FAST, header_timeout=SHORT))
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Partial: ")
        elapsed, data = _timed_close(conn)
        assert data.startswith(b"HTTP/1.1 408 "), data
    assert elapsed >= SHORT * 0.9


def test_silent_connection_closed(serve: Any) -> None:
    """A client that connects and sends nothing is closed by a timeout (408 or nothing)."""
    settings = dataclasses.replace(FAST, header_timeout=SHORT, keepalive_timeout=SHORT)
    server = serve(hello_app, settings)
    with server.connect() as conn:
        elapsed, data = _timed_close(conn)
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert elapsed >= SHORT * 0.9


# --------------------------------------------------------------------------- body timeout


def test_idle_body_closes(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioworker")
    server = serve(echo_app, dataclasses.replace(FAST, body_timeout=SHORT))
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        elapsed, data = _timed_close(conn)
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert elapsed >= SHORT * 0.9
    assert server.get().status == 200


def test_slow_but_steady_body_is_fine(serve: Any) -> None:
    """The body timeout is an idle timeout: a body trickling faster than it completes."""
    server = serve(echo_app, dataclasses.replace(FAST, body_timeout=0.5, header_timeout=5.0))
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n")
        conn.sock.settimeout(0.1)
        for byte in b"1234567":
            conn.sock.sendall(bytes([byte]))
            # Pace the trickle (0.1 s per byte, 0.8 s in all) by waiting for an answer that
            # must not come before the body is complete.
            with pytest.raises(TimeoutError):
                conn.sock.recv(1, socket.MSG_PEEK)
        conn.send(b"8")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"12345678")


# --------------------------------------------------------------------------- keep-alive timeout


def test_keepalive_idle_closes(serve: Any) -> None:
    server = serve(hello_app, dataclasses.replace(FAST, keepalive_timeout=SHORT))
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().status == 200
        elapsed, data = _timed_close(conn)
        assert data == b""
    assert SHORT * 0.9 <= elapsed <= SHORT + SLACK


def test_keepalive_timer_restarts_per_request(serve: Any) -> None:
    server = serve(hello_app, dataclasses.replace(FAST, keepalive_timeout=0.5))
    with server.connect() as conn:
        start = time.monotonic()
        for _ in range(4):
            conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response().status == 200
            conn.assert_open(wait=0.25)
        assert time.monotonic() - start > 0.9  # longer than the timeout, yet still open


# --------------------------------------------------------------------------- caps


def test_max_connections_evicts_the_oldest_idle_connection(serve: Any) -> None:
    server = serve(hello_app, dataclasses.replace(FAST, max_connections=2))
    first, second = server.connect(), server.connect()
    try:
        for conn in (first, second):
            conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response().status == 200
        # Both are idle keep-alive connections: a third one is served, the oldest is closed.
        assert server.get("/", timeout=SLACK).status == 200
        assert first.read_until_closed(timeout=SLACK) == b""
        second.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert second.read_response().status == 200
    finally:
        first.close()
        second.close()


def test_max_connections_evicts_silent_and_half_sent_heads_first(serve: Any) -> None:
    """Clients that send nothing (or half a head) cannot lock a worker for header_timeout."""
    settings = dataclasses.replace(
        FAST, max_connections=3, header_timeout=60.0, keepalive_timeout=60.0
    )
    server = serve(hello_app, settings)
    gate_keeper = server.connect()
    silent, partial = server.connect(), server.connect()
    newcomers: list[RawConn] = []
    try:
        gate_keeper.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate_keeper.read_response().status == 200
        partial.send(b"GET / HTTP/1.1\r\nHost:")
        # Oldest first: each newcomer (kept open) evicts the idle gate_keeper, then the
        # silent connection, then the half-sent head, and is served.
        for evicted in (gate_keeper, silent, partial):
            newcomer = server.connect()
            newcomers.append(newcomer)
            newcomer.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert newcomer.read_response(timeout=SLACK).status == 200
            assert evicted.read_until_closed(timeout=SLACK) == b""
    finally:
        for conn in (gate_keeper, silent, partial, *newcomers):
            conn.close()


def test_max_connections_refuses_when_every_connection_is_in_use(serve: Any) -> None:
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await gate.hold()
            await send_response(send, 200, b"done")

    server = serve(app, dataclasses.replace(FAST, max_connections=1))
    with server.connect() as busy:
        busy.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        with server.connect() as third:
            try:
                third.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = third.read_until_closed(timeout=SLACK)
            assert data.startswith(b"HTTP/1.1 503 "), data
            assert b"retry-after: 1\r\n" in data.lower()
        gate.open()
        assert busy.read_response().body == b"done"


@pytest.mark.parametrize(
    ("trusted", "third"),
    [pytest.param((), 503, id="untrusted-capped"), pytest.param(("127.0.0.1",), 200, id="proxy")],
)
def test_max_connections_per_client(serve: Any, trusted: tuple[str, ...], third: int) -> None:
    settings = dataclasses.replace(FAST, max_connections_per_client=2, forwarded_allow_ips=trusted)
    server = serve(hello_app, settings)
    held = [server.connect(), server.connect()]
    try:
        for conn in held:
            conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response().status == 200
        with server.connect() as conn:
            conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert conn.read_response(timeout=SLACK).status == third
        held.pop().close()

        def served() -> bool:
            return bool(server.get("/", timeout=SLACK).status == 200)

        wait_until(served, SLACK, "the client's freed connection to count again")
    finally:
        for conn in held:
            conn.close()


def test_max_requests_in_progress_503(serve: Any) -> None:
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/block":
            await gate.hold()
        await send_response(send, 200, b"done")

    server = serve(app, dataclasses.replace(FAST, max_requests_in_progress=1))
    with server.connect() as busy:
        busy.send(b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        start = time.monotonic()
        refused = server.get("/", timeout=SLACK)
        assert time.monotonic() - start < SLACK
        assert refused.status == 503
        assert refused.header("retry-after") is not None
        assert refused.header("retry-after").isdigit()
        gate.open()
        assert busy.read_response().body == b"done"
    assert server.get("/").body == b"done"


# --------------------------------------------------------------------------- request deadline


def test_request_deadline_504(serve: Any) -> None:
    cancelled = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/":
            await send_response(send, 200, b"ok")
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = serve(app, dataclasses.replace(FAST, request_timeout=SHORT))
    with server.connect() as conn:
        start = time.monotonic()
        conn.send(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
        response = conn.read_response(timeout=SHORT + SLACK)
        elapsed = time.monotonic() - start
        assert response.status == 504
    assert SHORT * 0.9 <= elapsed <= SHORT + SLACK
    assert cancelled.wait(SLACK), "the app task was not cancelled"
    assert server.get("/").body == b"ok"


# --------------------------------------------------------------------------- app exceptions


def test_exception_before_start_is_500(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await send_response(send, 200, b"ok")
            return
        raise RuntimeError("secret-detail-42")

    server = serve(app)
    response = server.get("/boom")
    assert response.status == 500
    assert b"secret-detail-42" not in response.raw
    assert b"Traceback" not in response.raw
    records = [r for r in caplog.records if r.exc_info and "secret-detail-42" in str(r.exc_info[1])]
    assert records, "the traceback must go to the log"
    assert server.get("/ok").body == b"ok"


def test_exception_after_start_aborts(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await send_response(send, 200, b"ok")
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("after-start")

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(IncompleteResponse) as info:
            conn.read_response()
        assert info.value.partial.endswith(b"half")
    assert any(r.exc_info for r in caplog.records)
    assert server.get("/ok").body == b"ok"


def test_exception_after_start_chunked_aborts(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("after-start")

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        # No terminating zero-size chunk: the client can tell the response is incomplete.
        with pytest.raises(IncompleteResponse):
            conn.read_response()


def test_app_returns_without_response_is_500(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    server = serve(app)
    assert server.get("/").status == 500


# --------------------------------------------------------------------------- graceful shutdown


def test_graceful_shutdown(serve: Any) -> None:
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await gate.hold()
        await send_response(send, 200, b"done")

    server = serve(app, dataclasses.replace(FAST, graceful_timeout=5.0, keepalive_timeout=30.0))
    idle = server.connect()
    busy = server.connect()
    try:
        idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert idle.read_response().status == 200
        busy.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        start = time.monotonic()
        server.close()
        idle.assert_closed(timeout=SLACK)  # idle keep-alive closed at once
        assert time.monotonic() - start < SLACK
        # No new connections once closing started.

        def refused() -> bool:
            try:
                with server.connect(timeout=1.0) as late:
                    late.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    late.read_response(timeout=0.5)
            except (ConnectionRefusedError, IncompleteResponse, ConnectionResetError):
                return True
            return False

        wait_until(refused, SLACK, "the server to refuse connections after close()")
        assert server.running
        gate.open()
        response = busy.read_response()
        assert response.body == b"done"
        assert response.closes, "a response finished during shutdown announces the close"
        busy.read_until_closed()
        server.wait_stopped(timeout=SLACK)
    finally:
        idle.close()
        busy.close()


def test_graceful_timeout_cuts_stuck_requests(serve: Any) -> None:
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await gate.hold()  # never opened: a stuck app

    server = serve(app, dataclasses.replace(FAST, graceful_timeout=SHORT))
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        start = time.monotonic()
        server.close()
        data = conn.read_until_closed(timeout=SHORT + SLACK)
        assert data == b"" or data.startswith(b"HTTP/1.1 503 "), data
        server.wait_stopped(timeout=SLACK)
        assert SHORT * 0.9 <= time.monotonic() - start <= SHORT + SLACK


def test_state_counters(serve: Any) -> None:
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await gate.hold()
        body = await read_body(receive)
        await send_response(send, 404 if scope["path"] == "/missing" else 200, body)

    server = serve(app)
    state = server.server.state
    assert (
        server.request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").body == b"abc"
    )
    assert server.get("/missing").status == 404
    with server.connect() as conn:
        conn.send(b"GET /slow?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
        active = server.call(lambda: [(c.method, c.path) for c in state.active])
        assert active == [("GET", "/slow")]
        assert server.call(lambda: state.in_progress) == 1
        assert server.call(lambda: state.connections) == 1
        gate.open()
        assert conn.read_response().status == 200
    wait_until(lambda: server.call(lambda: state.requests) == 3, what="3 requests counted")
    wait_until(lambda: server.call(lambda: state.connections) == 0, what="connections back to 0")
    assert server.call(lambda: state.in_progress) == 0
    classes = server.call(lambda: list(state.status_classes))
    assert classes[2] == 2
    assert classes[4] == 1
    assert server.call(lambda: sum(state.latency_counts)) == 3
    assert server.call(lambda: state.bytes_in) > 0
    assert server.call(lambda: state.bytes_out) > 0


def test_slowloris_on_second_request(serve: Any) -> None:
    """The head timeout also applies to a later request on a keep-alive connection."""
    settings = dataclasses.replace(FAST, header_timeout=SHORT, keepalive_timeout=5.0)
    server = serve(hello_app, settings)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().status == 200
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        elapsed, data = _timed_close(conn)
        assert data.startswith(b"HTTP/1.1 408 "), data
    assert elapsed >= SHORT * 0.9


def test_timeouts_do_not_cut_a_slow_app(serve: Any) -> None:
    """Head, keep-alive and body timeouts are about the client, not about a busy app."""
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await gate.hold()  # longer than every client timeout, before reading the body
        await send_response(send, 200, await read_body(receive))

    settings = dataclasses.replace(
        FAST, header_timeout=SHORT, keepalive_timeout=SHORT, body_timeout=SHORT
    )
    server = serve(app, settings)
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
        assert gate.entered.wait(5)
        conn.assert_open(wait=3 * SHORT)
        gate.open()
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"body")


def test_pipelined_requests_wait_for_their_turn(serve: Any) -> None:
    """Requests queued behind a slow one are not cut by the head or keep-alive timeout."""
    gate = Gate()

    app = gated(gate, path_app)

    settings = dataclasses.replace(FAST, header_timeout=SHORT, keepalive_timeout=SHORT)
    server = serve(app, settings)
    with server.connect() as conn:
        conn.send(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert gate.entered.wait(5)
        conn.assert_open(wait=3 * SHORT)
        gate.open()
        assert [conn.read_response().body for _ in range(3)] == [b"/slow", b"/a", b"/b"]


def test_deadline_while_app_waits_for_body(serve: Any) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send_response(send, 200, await read_body(receive))

    settings = dataclasses.replace(FAST, request_timeout=SHORT, body_timeout=5.0)
    server = serve(app, settings)
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        response = conn.read_response(timeout=SHORT + SLACK)
        assert response.status == 504
        conn.read_until_closed()


def test_graceful_shutdown_lets_a_body_finish(serve: Any) -> None:
    """A request whose body is still arriving when shutdown starts gets all of it."""
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        first = await receive()
        gate.entered.set()
        rest = await read_body(receive)
        await send_response(send, 200, first["body"] + rest)

    server = serve(app, dataclasses.replace(FAST, graceful_timeout=5.0))
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012")
        assert gate.entered.wait(5)
        server.close()
        conn.assert_open(wait=0.1)
        conn.send(b"3456789")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"0123456789")
        conn.read_until_closed()
    server.wait_stopped()


def test_partial_pipelined_head_during_slow_response(serve: Any) -> None:
    """A second request's head still arriving while the first is answered slowly: the first
    still gets its own response, never a 408 in its place."""
    gate = Gate()

    app = gated(gate, path_app)

    server = serve(app, dataclasses.replace(FAST, header_timeout=SHORT))
    with server.connect() as conn:
        conn.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHo")
        assert gate.entered.wait(5)
        conn.assert_open(wait=3 * SHORT)  # longer than header_timeout
        gate.open()
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"/slow")
        # The second head may then time out (408) or be completed and answered.
        try:
            conn.send(b"st: a\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return
        try:
            second = conn.read_response()
        except IncompleteResponse:
            return
        assert second.status in (200, 408)
        if second.status == 200:
            assert second.body == b"/next"


def test_many_concurrent_connections(serve: Any) -> None:
    """50 clients at once, 10 keep-alive requests each: all answered, counters add up."""
    from concurrent.futures import ThreadPoolExecutor

    server = serve(echo_app)

    def client(n: int) -> list[bytes]:
        bodies = []
        with server.connect(timeout=10) as conn:
            for i in range(10):
                body = f"{n}-{i}".encode()
                conn.send(
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                bodies.append(conn.read_response(timeout=10).body)
        return bodies

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert results == [[f"{n}-{i}".encode() for i in range(10)] for n in range(50)]
    state = server.server.state
    wait_until(lambda: server.call(lambda: (state.requests, state.connections)) == (500, 0))
    assert server.call(lambda: state.status_classes[2]) == 500


def test_server_answered_errors_are_counted(serve: Any) -> None:
    """A 400 from the parser and a 503 over a connection limit count like app responses."""
    settings = dataclasses.replace(FAST, max_connections_per_client=1, forwarded_allow_ips=())
    server = serve(hello_app, settings)
    state = server.server.state
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert conn.read_response().status == 400
    wait_until(lambda: server.call(lambda: state.connections) == 0, what="first closed")
    with server.connect() as held, server.connect() as refused:
        held.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert held.read_response().status == 200
        assert refused.read_until_closed(timeout=SLACK).startswith(b"HTTP/1.1 503 ")
    wait_until(lambda: server.call(lambda: state.requests) == 3, what="3 responses counted")
    classes = server.call(lambda: list(state.status_classes))
    assert (classes[2], classes[4], classes[5]) == (1, 1, 1)


def test_shutdown_ends_a_lingering_close_at_once(serve: Any) -> None:
    """After an error the server drains input for up to 2 s; a stop does not wait for that."""
    server = serve(hello_app)
    with server.connect() as conn:
        # The client keeps its side open after a 400: the server lingers, reading.
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert conn.read_response().status == 400
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.5, "shutdown waited for the lingering close"


def test_request_on_idle_connection_during_shutdown_is_answered(serve: Any) -> None:
    """A keep-alive client that sends just as a graceful stop begins gets an answer with
    `connection: close`, not a reset: closing idle connections at once loses such requests."""
    server = serve(hello_app, dataclasses.replace(FAST, keepalive_timeout=30.0))
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().status == 200
        server.close()
        wait_until(lambda: server.call(lambda: server.server.closing), what="stop begun")
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.closes
        conn.read_until_closed(timeout=SLACK)
    server.wait_stopped(timeout=SLACK)
