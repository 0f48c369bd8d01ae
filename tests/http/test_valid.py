"""Valid requests: fed whole, byte by byte and pipelined; keep-alive, framing and ASGI scope."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import tempfile
import threading
import time
from typing import Any, cast

import pytest

from tests.helpers.client import IncompleteResponse
from tests.helpers.engine import FAST, Gate, Serve, ServerThread, read_body, send_response
from tests.helpers.wait import wait_until


def _latin(value: bytes) -> str:
    return value.decode("latin-1")


async def inspect_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Routes used by these tests; the default route answers the scope and body as JSON."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": False})
    elif path == "/head":
        await send_response(send, 200, b"hello")
    elif path in ("/204", "/304"):
        await send({"type": "http.response.start", "status": int(path[1:]), "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/own-headers":
        headers = [(b"server", b"mine"), (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")]
        await send_response(send, 200, b"x", headers)
    elif path == "/more":
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"5")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"hello world"})
    elif path == "/more-split":
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"5")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"hel", "more_body": True})
        await send({"type": "http.response.body", "body": b"lo world"})
    elif path == "/fewer":
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"10")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"hello"})
    elif path == "/app-close":
        await send_response(send, 200, b"bye", [(b"connection", b"close")])
    elif path == "/noread":
        await send_response(send, 200, b"not reading")
    elif path == "/generated-headers":  # headers as any iterable, as ASGI allows
        pairs = ((b"x-n", b"%d" % n) for n in range(2))
        await send({"type": "http.response.start", "status": 201, "headers": pairs})
        await send({"type": "http.response.body", "body": b"made"})
    else:
        body = await read_body(receive)
        info = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": _latin(scope["raw_path"]),
            "query_string": _latin(scope["query_string"]),
            "http_version": scope["http_version"],
            "headers": [[_latin(k), _latin(v)] for k, v in scope["headers"]],
            "body": _latin(body),
        }
        await send_response(send, 200, json.dumps(info).encode())


@pytest.fixture
def server(serve: Serve) -> ServerThread:
    return serve(inspect_app)


# (raw request, expected subset of the echoed JSON)
VALID = [
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        {"method": "GET", "path": "/", "raw_path": "/", "query_string": "", "body": ""},
        id="simple-get",
    ),
    pytest.param(
        b"GET /a%20b/%E2%82%AC/x%2Fy?q=%20&r=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        {
            "path": "/a b/\u20ac/x/y",
            "raw_path": "/a%20b/%E2%82%AC/x%2Fy",
            "query_string": "q=%20&r=1",
        },
        id="percent-decoded-path",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        {"method": "POST", "body": "hello world"},
        id="content-length-body",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        {"method": "POST", "body": ""},
        id="empty-body",
    ),
    pytest.param(
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
        # Trailer fields never turn into request headers (RFC 9110 section 6.5.1).
        {
            "body": "hello world0123456789",
            "headers": [["host", "a"], ["transfer-encoding", "chunked"]],
        },
        id="chunked-body",
    ),
    pytest.param(
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        {"body": "abc"},
        id="chunked-any-case",
    ),
    pytest.param(
        b"GET /h HTTP/1.1\r\nHost: a\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\nX-Empty:\r\n"
        b"X-Sp:   padded \t \r\nX-Obs: caf\xe9\r\n\r\n",
        {
            "headers": [
                ["host", "a"],
                ["x-b", "1"],
                ["x-a", "2"],
                ["x-b", "3"],
                ["x-empty", ""],
                ["x-sp", "padded"],
                ["x-obs", "caf\xe9"],
            ]
        },
        id="headers-order-duplicates-case",
    ),
    pytest.param(
        b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        {"http_version": "1.0", "path": "/old"},
        id="http-1.0-keep-alive",
    ),
    pytest.param(
        b"GET http://example.com/abs/p%20q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        {"path": "/abs/p q", "raw_path": "/abs/p%20q", "query_string": "x=1"},
        id="absolute-form",
    ),
    pytest.param(
        b"DELETE /x?y HTTP/1.1\r\nHost: a\r\n\r\n",
        {"method": "DELETE", "path": "/x", "query_string": "y"},
        id="delete-query",
    ),
]


def _check(response: Any, expected: dict[str, Any]) -> None:
    assert response.status == 200, response.raw
    info = json.loads(response.body)
    for key, value in expected.items():
        assert info[key] == value, (key, info)


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_whole(server: ServerThread, raw: bytes, expected: dict[str, Any]) -> None:
    with server.connect() as conn:
        conn.send(raw)
        _check(conn.read_response(), expected)
        # Persistent connection: the same request again on the same connection.
        conn.send(raw)
        _check(conn.read_response(), expected)


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_bytewise(server: ServerThread, raw: bytes, expected: dict[str, Any]) -> None:
    with server.connect() as conn:
        conn.send_bytewise(raw)
        _check(conn.read_response(), expected)


def _valid_cases() -> list[tuple[bytes, dict[str, Any]]]:
    """VALID as (raw, expected) pairs, for the tests that send them all at once."""
    return [(cast(bytes, p.values[0]), cast("dict[str, Any]", p.values[1])) for p in VALID]


def test_valid_pipelined(server: ServerThread) -> None:
    """Every valid request in one send; the answers come back in order."""
    cases = _valid_cases()
    with server.connect() as conn:
        conn.send(b"".join(raw for raw, _ in cases))
        for _, expected in cases:
            _check(conn.read_response(), expected)
        conn.assert_open()


def test_pipelined_bytewise_with_bodies(server: ServerThread) -> None:
    cases = _valid_cases() * 2
    with server.connect() as conn:
        conn.send_bytewise(b"".join(raw for raw, _ in cases))
        for _, expected in cases:
            _check(conn.read_response(), expected)


# Requests after which the connection closes, with bodies: each also sent head first, body later.
CLOSING = [
    pytest.param(
        b"POST /p HTTP/1.0\r\nContent-Length: 10\r\n\r\n",
        b"0123456789",
        id="http-1.0-body",
    ),
    # RFC 9112 section 6.1: HTTP/1.0 with Transfer-Encoding is served, then closed.
    pytest.param(
        b"POST /p HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
        id="http-1.0-chunked-keep-alive",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 10\r\n\r\n",
        b"0123456789",
        id="close-content-length",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n",
        id="close-chunked",
    ),
]


@pytest.mark.parametrize("mode", ["whole", "bytewise", "split"])
@pytest.mark.parametrize(("head", "body"), CLOSING)
def test_closing_requests_with_bodies(
    server: ServerThread, head: bytes, body: bytes, mode: str
) -> None:
    with server.connect() as conn:
        if mode == "whole":
            conn.send(head + body)
        elif mode == "bytewise":
            conn.send_bytewise(head + body)
        else:
            conn.send(head)
            server.call(lambda: None)  # the head is read on its own, the body later
            conn.send(body)
        response = conn.read_response()
        _check(response, {"body": "0123456789"})
        assert response.closes
        conn.assert_closed()


UPGRADE = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQ\r\n"


@pytest.mark.parametrize("mode", ["whole", "bytewise", "split"])
def test_upgrade_request_served_as_http(server: ServerThread, mode: str) -> None:
    """Upgrade is ignored (RFC 9110 section 7.8): the request, body included, is plain HTTP,
    and what follows it is never read as a request."""
    head = b"POST /up HTTP/1.1\r\nHost: a\r\n" + UPGRADE + b"Content-Length: 10\r\n\r\n"
    rest = b"0123456789" + SMUGGLED
    with server.connect() as conn:
        if mode == "whole":
            conn.send(head + rest)
        elif mode == "bytewise":
            try:  # the server may close once the body is in, before the trailing bytes
                conn.send_bytewise(head + rest)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            conn.send(head + rest[:3])
            server.call(lambda: None)
            conn.send(rest[3:])
        response = conn.read_response()
        _check(response, {"path": "/up", "body": "0123456789"})
        assert response.closes
        conn.assert_closed()


def test_upgrade_get_then_pipelined(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"GET /up HTTP/1.1\r\nHost: a\r\n" + UPGRADE + b"\r\n" + SMUGGLED)
        _check(conn.read_response(), {"path": "/up", "body": ""})
        conn.assert_closed()


# --------------------------------------------------------------------------- persistence


def test_http11_keeps_alive_by_default(server: ServerThread) -> None:
    with server.connect() as conn:
        for _ in range(3):
            conn.send(b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n")
            response = conn.read_response()
            assert (response.status, response.body) == (200, b"hello")
            assert not response.closes
        conn.assert_open()


def test_http10_closes_by_default(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"GET /head HTTP/1.0\r\n\r\n")
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"hello")
        conn.assert_closed()


def test_http10_keep_alive(server: ServerThread) -> None:
    with server.connect() as conn:
        for _ in range(2):
            conn.send(b"GET /head HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = conn.read_response()
            assert response.body == b"hello"
            assert "keep-alive" in (response.header("connection") or "").lower()
        conn.assert_open()


def test_http10_streaming_is_close_delimited(server: ServerThread) -> None:
    """HTTP/1.0 has no chunked coding: a response without length ends with the connection."""
    with server.connect() as conn:
        conn.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = conn.read_response()  # reads to EOF: fails by timeout if never closed
        assert response.header("transfer-encoding") is None
        assert response.body == b"hello world"


def test_client_connection_close(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"GET /head HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        response = conn.read_response()
        assert response.body == b"hello"
        assert response.closes
        conn.assert_closed()


def test_pipelined_after_connection_close_is_ignored(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(
            b"GET /head HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert conn.read_response().closes
        conn.assert_closed()


def test_app_connection_close(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(
            b"GET /app-close HTTP/1.1\r\nHost: a\r\n\r\nGET /head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        response = conn.read_response()
        assert response.body == b"bye"
        assert response.closes
        conn.assert_closed()


def test_a_known_head_frames_like_a_new_one(server: ServerThread) -> None:
    """Response heads are cached by (status, headers) after the first (framing._HEADS): the
    third answer of each kind still closes when the app says so, still refuses a body longer
    than its content-length, and headers given as a generator are read every time."""
    for _ in range(3):
        test_app_connection_close(server)
        with server.connect() as conn:
            conn.send(b"GET /more HTTP/1.1\r\nHost: a\r\n\r\n")
            head = conn.read_until_closed()  # the head alone, then the close
            assert head.startswith(b"HTTP/1.1 200")
            assert head.endswith(b"\r\n\r\n")
        made = server.get("/generated-headers")
        assert (made.status, made.body) == (201, b"made")
        assert made.get_all("x-n") == ["0", "1"]
        assert made.header("content-length") == "4"


# --------------------------------------------------------------------------- response framing


def test_chunked_response_without_content_length(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        for _ in range(2):
            response = conn.read_response()
            assert response.chunked
            assert response.body == b"hello world"
        conn.assert_open()


def test_head_has_headers_but_no_body(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"HEAD /head HTTP/1.1\r\nHost: a\r\n\r\nGET /head HTTP/1.1\r\nHost: a\r\n\r\n")
        head = conn.read_response(method="HEAD")
        assert head.status == 200
        assert head.header("content-length") == "5"
        get = conn.read_response()  # a leaked body would corrupt this one
        assert get.body == b"hello"


def test_head_of_streaming_route(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /head HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response(method="HEAD").status == 200
        assert conn.read_response().body == b"hello"


@pytest.mark.parametrize("path", ["/204", "/304"])
def test_no_body_statuses(server: ServerThread, path: str) -> None:
    with server.connect() as conn:
        conn.send(
            f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
            + b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        response = conn.read_response()
        assert response.status == int(path[1:4])
        assert response.header("transfer-encoding") is None
        if response.status == 204:
            assert response.header("content-length") is None
        nxt = conn.read_response()  # body bytes of the first would corrupt this
        assert (nxt.status, nxt.body) == (200, b"hello")


def test_date_and_server_headers(server: ServerThread) -> None:
    response = server.get("/head")
    assert response.header("server") == "aioworker"
    date = response.header("date")
    assert date is not None
    parsed = email.utils.parsedate_to_datetime(date)
    assert parsed.tzinfo is not None
    assert abs(parsed.timestamp() - time.time()) < 3  # current, not cached since startup
    assert date.endswith(" GMT")
    own = server.get("/own-headers")
    assert own.get_all("server") == ["mine"]
    assert own.get_all("date") == ["Thu, 01 Jan 1970 00:00:00 GMT"]


def test_no_server_header_when_disabled(serve: Any) -> None:
    server = serve(inspect_app, dataclasses.replace(FAST, server_header=""))
    response = server.get("/head")
    assert response.header("server") is None
    assert response.header("date") is not None


@pytest.mark.parametrize("path", ["/more", "/more-split", "/fewer"])
def test_wrong_content_length_closes(
    server: ServerThread, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aioworker")
    with server.connect() as conn:
        conn.send(
            f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
            + b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        data = conn.read_until_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    # At most the announced bytes, and never a second response on this connection.
    assert b"hello".startswith(body), body
    assert any(r.name.startswith("aioworker") for r in caplog.records), caplog.records
    assert server.get("/head").body == b"hello"


# --------------------------------------------------------------------------- Expect: 100-continue


def test_expect_continue_when_app_reads(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = conn.read_response()
        assert interim.status == 100
        assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello")
        _check(conn.read_response(), {"body": "hello"})


def test_expect_continue_not_sent_when_app_does_not_read(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(
            b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = conn.read_response()
        assert (response.status, response.body) == (200, b"not reading")


def test_expect_continue_on_http10_ignored(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(b"POST /e HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
        response = conn.read_response()
        assert response.status == 200
        assert json.loads(response.body)["body"] == "hello"


# --------------------------------------------------------------------------- ASGI scope


def test_scope_fields(serve: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append({**scope, "state": dict(scope["state"])})
        scope["state"]["mutated"] = True
        await send_response(send, 200, b"ok")

    settings = dataclasses.replace(FAST, root_path="/mount")
    server = serve(app, settings)
    with server.connect() as conn:
        conn.send(
            b"GET /caf%C3%A9/%2F?a=%20b&c HTTP/1.1\r\nHost: example\r\nX-Dup: 1\r\n"
            b"X-UPPER: V\r\nx-dup: 2\r\n\r\n"
        )
        assert conn.read_response().status == 200
        client_address = conn.sock.getsockname()
        conn.send(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.read_response().status == 200
    first, second = seen
    assert first["type"] == "http"
    assert first["asgi"]["version"] == "3.0"
    major, minor = (int(x) for x in first["asgi"]["spec_version"].split("."))
    assert (major, minor) >= (2, 4)
    assert first["http_version"] == "1.1"
    assert second["http_version"] == "1.0"
    assert first["method"] == "GET"
    assert first["scheme"] == "http"
    assert first["path"] in ("/caf\u00e9//", "/mount/caf\u00e9//")
    assert isinstance(first["raw_path"], bytes)
    assert first["raw_path"].endswith(b"/caf%C3%A9/%2F")
    assert first["query_string"] == b"a=%20b&c"
    assert first["root_path"] == "/mount"
    headers = [(bytes(k), bytes(v)) for k, v in first["headers"]]
    assert headers == [
        (b"host", b"example"),
        (b"x-dup", b"1"),
        (b"x-upper", b"V"),
        (b"x-dup", b"2"),
    ]
    assert tuple(first["client"]) == client_address
    assert tuple(first["server"]) == server.address
    assert first["state"]["db"] == "connected"
    # Each request gets its own copy of the lifespan state.
    assert "mutated" not in second["state"]


def test_disconnect_reaches_app(serve: Any) -> None:
    got: list[dict[str, Any]] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        assert body == b"abc"
        got.append(await receive())  # blocks until the client goes away
        done.set()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert done.wait(5), "app never saw the disconnect"
    assert got == [{"type": "http.disconnect"}]
    # The half-closed connection is released, not kept with no request and no timeout.
    state = server.server.state
    wait_until(lambda: server.call(lambda: state.connections) == 0, 1.0, "connection released")


def test_disconnect_while_waiting_for_body(serve: Any) -> None:
    got: list[dict[str, Any]] = []
    gate = Gate()
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        first = await receive()
        got.append(first)
        gate.entered.set()
        got.append(await receive())
        done.set()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert gate.entered.wait(5)
    assert done.wait(5), "app never saw the disconnect"
    assert got[0]["body"] == b"abc"
    assert got[0]["more_body"] is True
    assert got[-1] == {"type": "http.disconnect"}


def test_held_heads_leave_before_their_first_body(serve: Any) -> None:
    """Apps that start their responses and then wait (server-sent events, long polls): each
    head reaches its client while the apps still wait, three connections at once (the heads
    held in one loop turn leave together, context.ServerContext.hold)."""
    gate = Gate()
    started: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.append(scope["path"])
        await gate.wait()
        await send({"type": "http.response.body", "body": b"late"})

    server = serve(app)
    conns = [server.connect() for _ in range(3)]
    try:
        for number, conn in enumerate(conns):
            conn.send(f"GET /{number} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        for conn in conns:
            conn.sock.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.sock.recv(4096)
                assert chunk, "closed before the head"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"transfer-encoding: chunked\r\n" in head
        assert sorted(started) == ["/0", "/1", "/2"]  # every app still waits on the gate
        gate.open()
        for conn in conns:
            tail = b""
            while not tail.endswith(b"0\r\n\r\n"):
                chunk = conn.sock.recv(4096)
                assert chunk, "closed before the body"
                tail += chunk
            assert tail == b"4\r\nlate\r\n0\r\n\r\n"
    finally:
        for conn in conns:
            conn.close()


def test_send_after_disconnect_does_not_hang(serve: Any) -> None:
    outcome: list[str] = []
    gate = Gate()
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        gate.entered.set()
        message = await receive()
        message = await receive()
        outcome.append(message["type"])
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x" * 1_000_000})
            outcome.append("sent")
        except OSError:
            outcome.append("oserror")
        done.set()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert gate.entered.wait(5)
    assert done.wait(5)
    assert outcome[0] == "http.disconnect"
    state = server.server.state
    wait_until(lambda: server.call(lambda: state.connections) == 0, 1.0, "connection released")
    # Either is allowed by ASGI 2.4 (ignored, or an OSError): never a hang.
    assert outcome[1] in ("sent", "oserror")


# --------------------------------------------------------------------------- app mistakes


async def _start_with(send: Any, headers: list[Any], status: Any = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"x"})


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"x-a", b"v\r\nx-injected: 1")], id="crlf-in-value"),
        pytest.param([(b"x-a", b"v\nx-injected: 1")], id="lf-in-value"),
        pytest.param([(b"x-a", b"v\x00")], id="nul-in-value"),
        pytest.param([(b"x-a\r\nx-injected", b"1")], id="crlf-in-name"),
        pytest.param([(b"x a", b"1")], id="space-in-name"),
        pytest.param([(b"", b"1")], id="empty-name"),
        pytest.param([(b"content-length", b"abc")], id="bad-content-length"),
        pytest.param([(b"content-length", b"-1")], id="negative-content-length"),
        pytest.param(
            [(b"content-length", b"1"), (b"content-length", b"2")], id="two-content-lengths"
        ),
    ],
)
def test_invalid_response_headers_give_500(serve: Any, headers: list[Any]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await send_response(send, 200, b"ok")
            return
        await _start_with(send, headers)

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        response = conn.read_response()
        assert response.status == 500
        assert b"x-injected" not in response.raw.lower()
    assert server.get("/ok").body == b"ok"


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([{"type": "http.response.body", "body": b"x"}], id="body-before-start"),
        pytest.param(
            [
                {"type": "http.response.start", "status": 200, "headers": []},
                {"type": "http.response.start", "status": 200, "headers": []},
            ],
            id="start-twice",
        ),
        pytest.param([{"type": "http.nonsense"}], id="unknown-type"),
        pytest.param(
            [{"type": "http.response.start", "status": "abc", "headers": []}], id="bad-status"
        ),
    ],
)
def test_protocol_errors_by_the_app(serve: Any, messages: list[dict[str, Any]]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            await send_response(send, 200, b"ok")
            return
        for message in messages:
            await send(message)

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            response = conn.read_response()
        except IncompleteResponse:
            return  # aborted: fine, as long as nothing corrupt follows
        assert response.status == 500
    assert server.get("/ok").body == b"ok"


# --------------------------------------------------------------------------- framing safety


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def test_unread_body_is_never_parsed_as_a_request(server: ServerThread) -> None:
    """The app answers without reading a body that looks like a request: never served."""
    with server.connect() as conn:
        conn.send(b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED))
        response = conn.read_response()
        assert response.body == b"not reading"
        try:
            conn.send(SMUGGLED + b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return
        rest = conn.read_until_closed() if not response.closes else b""
        # Either the body was skipped and only /head answered, or the connection closed.
        assert b"smuggled" not in rest
        if rest:
            assert rest.count(b"HTTP/1.1 ") == 1
            assert rest.endswith(b"\r\n\r\nhello")


def test_unread_body_in_same_packet(server: ServerThread) -> None:
    with server.connect() as conn:
        conn.send(
            b"POST /noread HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
            + SMUGGLED
            + b"GET /head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert conn.read_response().body == b"not reading"
        try:
            nxt = conn.read_response()
        except IncompleteResponse:
            return  # closed instead: also safe
        assert nxt.body == b"hello"


def test_unix_socket_scope(serve: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope)
        await send_response(send, 200, b"unix")

    with tempfile.TemporaryDirectory(prefix="aw") as tmp:
        path = f"{tmp}/s.sock"
        server = serve(app, uds=path)
        response = server.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert response.body == b"unix"
        server.stop()
    assert seen[0]["server"] is None or seen[0]["server"][0] == path
    assert seen[0]["client"] is None or isinstance(seen[0]["client"], (tuple, list))


def test_access_log(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioworker.access")
    server = serve(inspect_app, dataclasses.replace(FAST, access_log=True))
    assert server.get("/head?x=1").status == 200
    wait_until(lambda: any(r.name == "aioworker.access" for r in caplog.records))
    line = next(r.getMessage() for r in caplog.records if r.name == "aioworker.access")
    assert "GET" in line
    assert "/head" in line
    assert "200" in line


def test_no_access_log_by_default(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aioworker.access")
    server = serve(inspect_app)
    assert server.get("/head").status == 200
    server.stop()
    assert not [r for r in caplog.records if r.name == "aioworker.access"]


def test_client_gone_during_large_download(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The app streaming to a client that left finds out (send raises OSError) and ends."""
    caplog.set_level(logging.WARNING, logger="aioworker")
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(10_000):  # 640 MB: far more than any socket buffer
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            outcome.append("finished")
        except OSError:
            outcome.append("oserror")
        finally:
            done.set()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        conn._fill(time.monotonic() + 5, "the response head")
    assert done.wait(10), "the app never learned that the client left"
    assert outcome == ["oserror"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_receive_waiting_during_response_gets_disconnect_after_it(serve: Any) -> None:
    """ASGI: receive() after the response was sent returns http.disconnect, also when it was
    already waiting (a watcher task, as frameworks run beside a streaming response)."""
    got: list[str] = []
    done = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    got.append("disconnect")
                    done.set()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)  # the watcher is now waiting in receive()
        await send_response(send, 200, b"sent")
        try:
            await asyncio.wait_for(asyncio.shield(watcher), 5)
        except asyncio.TimeoutError:
            watcher.cancel()

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert conn.read_response().body == b"sent"
        assert done.wait(2), "receive() kept waiting after the response was complete"
        conn.assert_open()
    assert got == ["disconnect"]


def test_head_sent_while_app_waits_for_first_body(serve: Any) -> None:
    """Server-sent events and long polls send the head, then wait: the client gets the head
    without waiting for the first body message."""
    gate = Gate()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await gate.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})

    server = serve(app)
    with server.connect() as conn:
        conn.send(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        conn.sock.settimeout(3.0)
        try:
            first = conn.sock.recv(65536)
        finally:
            gate.open()
        assert first.startswith(b"HTTP/1.1 200 "), first
        conn.buf += first
        response = conn.read_response()
        assert response.body == b"data: 1\n\n"
