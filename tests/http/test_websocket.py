"""WebSockets end to end on the engine: handshake, scope, frames, close codes, errors, limits.

A real client (`websockets`' sync client) for what a browser does, raw frames
(tests/helpers/wsclient.py) for what a broken or hostile client does; every test runs under
asyncio and uvloop (the `serve` fixture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from aioworker.http.framing import ClientDisconnected
from tests.apps.wsapp import Record, WsApp
from tests.helpers import wsclient as raw
from tests.helpers.child import start_ready
from tests.helpers.client import RawConn, get, request
from tests.helpers.engine import FAST, Serve, ServerThread, run_in_loop
from tests.helpers.wait import wait_until

PAUSE = 1.0  # seconds a slow side stalls in the flow-control tests


def ws_url(server: ServerThread, path: str = "/echo") -> str:
    host, port = server.address[:2]
    return f"ws://{host}:{port}{path}"


def open_client(
    server: ServerThread, path: str = "/echo", subprotocols: list[str] | None = None
) -> ClientConnection:
    offered = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    return connect(ws_url(server, path), open_timeout=5, close_timeout=5, subprotocols=offered)


def response_headers(ws: ClientConnection) -> Headers:
    assert ws.response is not None
    return ws.response.headers


@pytest.fixture
def record() -> Record:
    return Record()


@pytest.fixture
def server(serve: Serve, record: Record) -> ServerThread:
    return serve(WsApp(record))


# -- handshake -----------------------------------------------------------------------------


def test_echo_text_binary_and_fragments(server: ServerThread) -> None:
    with open_client(server) as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv() == b"\x00\xff" * 1000
        ws.send(["frag", "mented"])  # one message in three frames (RFC 6455 section 5.4)
        assert ws.recv() == "fragmented"
        ws.send(b"y" * (1 << 20))
        assert ws.recv() == b"y" * (1 << 20)
        ws.ping(b"hi").wait(5)  # answered by the server


def test_accept_with_subprotocol_and_headers(server: ServerThread) -> None:
    with open_client(server, subprotocols=["one", "two"]) as ws:
        assert ws.subprotocol == "two"
        assert response_headers(ws)["x-extra"] == "yes"
        assert response_headers(ws)["server"] == "aioworker"


def test_scope(server: ServerThread) -> None:
    with open_client(server, "/scope?a=1&b=%20") as ws:
        scope = json.loads(str(ws.recv()))
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == ""
    assert scope["subprotocols"] == []
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.address[1]]
    assert "method" not in scope
    assert "websocket.http.response" in scope["extensions"]
    assert ["upgrade", "websocket"] in scope["headers"]
    assert scope["state"] == []


def test_close_before_accept_is_403(server: ServerThread) -> None:
    with pytest.raises(InvalidStatus) as info:
        open_client(server, "/deny")
    assert info.value.response.status_code == 403


def test_denial_response_extension(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(raw.handshake_request("/custom"))
        response = conn.read_response()
        assert response.status == 401
        assert response.body == b"no entry"
        assert response.header("x-why") == "token"
        conn.assert_closed()


@pytest.mark.parametrize("path", ["/noaccept", "/crash-before"])
def test_app_that_never_accepts_gets_500(
    server: ServerThread, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server.connect() as conn:
        conn.send(raw.handshake_request(path))
        assert conn.read_response().status == 500
        conn.assert_closed()
    assert any(r.name == "aioworker.error" for r in caplog.records)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Sec-WebSocket-Version": "8"}, 426, id="version-8"),
        pytest.param({"Sec-WebSocket-Key": "not-a-key"}, 400, id="bad-key"),
        pytest.param({"Sec-WebSocket-Key": ""}, 400, id="no-key"),
    ],
)
def test_bad_handshakes(server: ServerThread, headers: dict[str, str], status: int) -> None:
    with server.connect() as conn:
        conn.send(raw.handshake_request("/echo", headers))
        response = conn.read_response()
        assert response.status == status
        if status == 426:
            assert response.header("sec-websocket-version") == "13"
        conn.assert_closed()
    # The server goes on serving both kinds of request.
    assert server.get("/").body == b"plain http"
    with open_client(server) as ws:
        ws.send("still here")
        assert ws.recv() == "still here"


def test_plain_http_and_other_upgrades_unaffected(server: ServerThread) -> None:
    response = server.request(
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    )
    assert response.status == 200
    assert response.body == b"plain http"


# -- frames, close codes -------------------------------------------------------------------


def test_client_close_code_reaches_the_app(server: ServerThread, record: Record) -> None:
    with open_client(server) as ws:
        ws.close(4321, "done here")
    assert record.disconnected.wait(5)
    assert record.disconnects == [
        {"type": "websocket.disconnect", "code": 4321, "reason": "done here"}
    ]
    # send() after the close raises ClientDisconnected, an OSError (ASGI 2.4).
    assert isinstance(record.send_errors[0], ClientDisconnected)
    assert isinstance(record.send_errors[0], OSError)


def test_app_close_code_and_reason(server: ServerThread) -> None:
    with open_client(server, "/close") as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.close_code == 4001
        assert ws.close_reason == "bye"


def test_app_exception_closes_1011(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    with open_client(server, "/crash") as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.close_code == 1011
    assert any("crash after accept" in r.getMessage() or r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param([raw.frame(raw.TEXT, b"\xff\xfe")], 1007, id="invalid-utf8"),
        pytest.param(
            [raw.frame(raw.TEXT, b"\xe2\x82", fin=False), raw.frame(raw.CONT, b"\x28")],
            1007,
            id="invalid-utf8-fragmented",
        ),
        pytest.param([raw.frame(raw.TEXT, b"x", mask=False)], 1002, id="unmasked"),
        pytest.param([raw.frame(0x3, b"x")], 1002, id="reserved-opcode"),
        pytest.param([raw.frame(raw.TEXT, b"x", rsv=0x20)], 1002, id="rsv2-bit"),
        pytest.param([raw.frame(raw.CONT, b"x")], 1002, id="continuation-first"),
        pytest.param([raw.frame(raw.PING, b"p", fin=False)], 1002, id="fragmented-ping"),
        pytest.param([raw.frame(raw.BINARY, b"z" * 2000)], 1009, id="too-big"),
        pytest.param(
            [raw.frame(raw.BINARY, b"z" * 800, fin=False), raw.frame(raw.CONT, b"z" * 800)],
            1009,
            id="too-big-fragmented",
        ),
    ],
)
def test_bad_frames_close_with_their_code(
    serve: Serve, record: Record, frames: list[bytes], code: int
) -> None:
    server = serve(WsApp(record), dataclasses.replace(FAST, ws_max_message_bytes=1024))
    with server.connect() as conn:
        raw.open_ws(conn)
        for f in frames:
            conn.send(f)
        _, opcode, payload = raw.read_frame(conn)
        assert (opcode, raw.close_code(payload)) == (raw.CLOSE, code)
        conn.assert_closed()
    assert record.disconnected.wait(5)
    assert record.disconnects[0]["code"] == code


def test_permessage_deflate_on_by_default_and_off_by_setting(serve: Serve) -> None:
    on = serve(WsApp())
    with open_client(on) as ws:
        assert "permessage-deflate" in response_headers(ws).get("sec-websocket-extensions", "")
        ws.send("a" * 100_000)
        assert ws.recv() == "a" * 100_000
    off = serve(WsApp(), dataclasses.replace(FAST, ws_per_message_deflate=False))
    with open_client(off) as ws:
        assert "sec-websocket-extensions" not in response_headers(ws)


# -- keepalive -----------------------------------------------------------------------------


def test_keepalive_ping_and_its_timeout(serve: Serve, record: Record) -> None:
    settings = dataclasses.replace(FAST, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    server = serve(WsApp(record), settings)
    with server.connect() as conn:
        raw.open_ws(conn)
        _, opcode, payload = raw.read_frame(conn, timeout=5)
        assert opcode == raw.PING
        conn.send(raw.frame(raw.PONG, payload))  # answered: the connection stays
        _, opcode, payload = raw.read_frame(conn, timeout=5)
        assert opcode == raw.PING  # the next one, unanswered
        _, opcode, payload = raw.read_frame(conn, timeout=5)
        assert (opcode, raw.close_code(payload)) == (raw.CLOSE, 1011)
        conn.assert_closed()
    assert record.disconnected.wait(5)
    assert record.disconnects[0]["code"] == 1011


# -- disconnects, flow control ---------------------------------------------------------------


def test_dropped_tcp_is_1006_and_send_after_it_is_not_an_app_error(
    server: ServerThread, record: Record, caplog: pytest.LogCaptureFixture
) -> None:
    with server.connect() as conn:
        raw.open_ws(conn)
        conn.send(raw.frame(raw.TEXT, b"ping"))
        assert raw.read_frame(conn)[2] == b"ping"
        conn.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
    assert record.disconnected.wait(5)
    assert record.disconnects[0]["code"] == 1006
    assert isinstance(record.send_errors[0], ClientDisconnected)
    assert not [r for r in caplog.records if r.name == "aioworker.error"]


def test_send_on_a_closing_transport_raises_before_connection_lost(serve: Serve) -> None:
    """The write that meets a client's reset closes the transport; connection_lost runs a loop
    turn later. A closing transport never pauses writing, so an app sending in a loop would
    never yield to it: send() must raise at once. Made exact here: the app is woken, then its
    transport closed, in one loop callback, so it runs first with the transport closing."""
    woken: list[asyncio.Future[None]] = []
    outcome: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        future = asyncio.get_running_loop().create_future()
        woken.append(future)
        await future
        sent = 0
        try:
            while sent < 10_000:  # a spinning loop, bounded so that the test ends
                await send({"type": "websocket.send", "bytes": b"x"})
                sent += 1
            outcome.append("spun without yielding")
        except ClientDisconnected:
            outcome.append(sent)

    server = serve(app)
    with server.connect() as conn:
        raw.open_ws(conn)
        wait_until(lambda: woken, 5.0, "the app accepted and waiting")

        def wake_then_close() -> None:
            woken[0].set_result(None)  # the app's task runs at the next turn ...
            for connection in list(server.server._ctx.connections):
                connection.transport.close()  # ... before connection_lost is called
            assert all(c.transport.is_closing() for c in server.server._ctx.connections)

        server.call(wake_then_close)
        wait_until(lambda: outcome, 5.0, "the app's send loop to end")
    assert outcome == [0]


def test_slow_reader_pauses_the_apps_send(server: ServerThread, record: Record) -> None:
    with server.connect() as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        raw.open_ws(conn, "/flood")
        # The client reads nothing for PAUSE seconds: an app whose send() never waited would
        # push gigabytes into the server's buffer by then (~1 GB/s on loopback).
        threading.Event().wait(PAUSE)
        stalled = record.sent
        assert stalled * 65536 < 16 << 20, f"{stalled} messages buffered for a stalled reader"
        # Reading again lets the app go on.
        for _ in range(stalled + 20):
            raw.read_frame(conn, timeout=10)
        assert record.sent > stalled
    assert record.disconnected.wait(5)
    assert isinstance(record.send_errors[0], ClientDisconnected)


def test_fast_sender_is_not_buffered_without_bound(serve: Serve, record: Record) -> None:
    server = serve(WsApp(record), dataclasses.replace(FAST, ws_max_queue=4))
    with server.connect() as conn:
        raw.open_ws(conn, "/sink")
        assert record.gate.entered.wait(5)
        conn.sock.settimeout(3)
        message = raw.frame(raw.BINARY, b"m" * 65536)
        sent = 0
        try:
            for _ in range(2000):  # 128 MiB: far beyond any socket buffer
                conn.sock.sendall(message)
                sent += 1
        except TimeoutError:
            pass
        assert sent < 1000, "the server read 128 MiB its app never received"
        record.gate.open()  # the app reads again: everything sent arrives, in order
        conn.sock.settimeout(10)
        for _ in range(sent):
            assert raw.read_frame(conn, timeout=10)[2] == b"m" * 65536


# -- without the ws extra ----------------------------------------------------------------------


def test_without_the_extra_handshakes_get_501_and_one_log_line(loop_name: str) -> None:
    proc, port = start_ready("tests.apps.ws_missing", loop_name, stderr=subprocess.PIPE)
    try:
        for _ in range(2):
            with RawConn.connect(("127.0.0.1", port)) as conn:
                conn.send(raw.handshake_request())
                assert conn.read_response().status == 501
                conn.assert_closed()
        assert request(("127.0.0.1", port), get("/")).body == b"plain http"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    hints = [line for line in err.splitlines() if "pip install aioworker[ws]" in line]
    assert len(hints) == 1, err


# -- supervision: stop, deadlines, counting ------------------------------------------------------


def test_graceful_stop_closes_open_websockets_1001_after_graceful_timeout(
    serve: Serve, record: Record
) -> None:
    server = serve(WsApp(record), dataclasses.replace(FAST, graceful_timeout=0.5))
    with open_client(server) as ws:
        server.close()
        # Stopping has begun; the WebSocket is served until graceful_timeout passes.
        ws.send("during the stop")
        assert ws.recv() == "during the stop"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
    server.wait_stopped()
    assert record.disconnects[0]["code"] == 1001


def test_request_timeout_covers_only_the_handshake(serve: Serve, record: Record) -> None:
    server = serve(WsApp(record), dataclasses.replace(FAST, request_timeout=0.3))
    with server.connect() as conn:
        conn.send(raw.handshake_request("/hang-before"))
        assert conn.read_response().status == 504
    with open_client(server) as ws:
        # Three deadlines later the accepted WebSocket still echoes.
        for n in range(3):
            threading.Event().wait(0.3)
            ws.send(f"message {n}")
            assert ws.recv(timeout=5) == f"message {n}"


def test_a_websocket_counts_once_and_its_messages_are_counted(
    server: ServerThread, record: Record
) -> None:
    state = server.server.state
    with open_client(server) as ws:
        assert state.websockets == 1
        for n in range(5):
            ws.send(str(n))
            assert ws.recv() == str(n)
        assert state.requests == 1  # the handshake: max_requests counts a WebSocket once
        assert not state.active  # an open WebSocket is no request in progress (watchdog, status)
    assert record.disconnected.wait(5)
    wait_until(lambda: state.websockets == 0, what="the WebSocket to be counted closed")
    assert (state.ws_messages_in, state.ws_messages_out) == (5, 5)
    assert state.status_classes[1] == 1  # the 101


def test_asyncio_client_on_the_same_loop_kind(
    server: ServerThread, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """websockets' asyncio client, itself on asyncio's loop or uvloop, with compression."""

    async def talk() -> list[str | bytes]:
        async with ws_connect(ws_url(server), compression="deflate") as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send("z" * 50_000)
            await ws.send([b"a", b"b"])
            got = [await ws.recv(), await ws.recv()]
            for n in range(5):  # later messages use the compression context of earlier ones
                await ws.send(f"message {n} " * 100)
                got.append(await ws.recv())
            return got

    expected = ["z" * 50_000, b"ab", *(f"message {n} " * 100 for n in range(5))]
    assert run_in_loop(loop_factory, talk()) == expected


def test_access_log_has_one_line_per_websocket(
    serve: Serve, record: Record, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(WsApp(record), dataclasses.replace(FAST, access_log=True))
    with caplog.at_level(logging.INFO, logger="aioworker.access"), open_client(server) as ws:
        for n in range(3):
            ws.send(str(n))
            assert ws.recv() == str(n)
    lines = [r.getMessage() for r in caplog.records if r.name == "aioworker.access"]
    assert len(lines) == 1, lines
    assert '"GET /echo HTTP/1.1" 101' in lines[0]


def test_scheme_is_wss_behind_a_trusted_https_proxy(server: ServerThread) -> None:
    with server.connect() as conn:
        raw.open_ws(conn, "/scope", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"})
        _, opcode, payload = raw.read_frame(conn)
    scope = json.loads(payload)
    assert opcode == raw.TEXT
    assert scope["scheme"] == "wss"
    assert scope["client"][0] == "10.1.2.3"


def test_client_leaving_during_the_handshake_is_a_1006_disconnect(
    server: ServerThread, record: Record, caplog: pytest.LogCaptureFixture
) -> None:
    with server.connect() as conn:
        conn.send(raw.handshake_request("/listen-before"))
        assert record.gate.entered.wait(5)
    assert record.disconnected.wait(5)
    assert record.disconnects == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    assert not [r for r in caplog.records if r.name == "aioworker.error"]
