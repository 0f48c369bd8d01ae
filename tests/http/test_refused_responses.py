"""Responses the app cannot mean: a status that is no HTTP status or a 1xx, a body or a length on
a 204 or 304. The app's mistake is logged, the client gets a 500 (or a closed connection once
the head is out), and the next response on the connection is never corrupted."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import pytest

from tests.helpers.client import get
from tests.helpers.engine import Serve, ServerThread, send_response

START = "http.response.start"
BODY = "http.response.body"

# The app's messages, in order, for a response the client gets a 500 for.
REFUSED = [
    pytest.param([{"type": START, "status": 99}], id="status-99"),
    pytest.param([{"type": START, "status": 600}], id="status-600"),
    pytest.param([{"type": START, "status": -200}], id="status-negative"),
    pytest.param([{"type": START, "status": 2000}], id="status-four-digits"),
    pytest.param([{"type": START, "status": "200"}], id="status-string"),
    pytest.param([{"type": START, "status": 200.0}], id="status-float"),
    pytest.param([{"type": START, "status": True}], id="status-bool"),
    pytest.param([{"type": START, "status": None}], id="status-none"),
    pytest.param([{"type": START, "status": 100}], id="status-100"),
    pytest.param([{"type": START, "status": 101}], id="status-101-in-http-scope"),
    pytest.param([{"type": START, "status": 103}], id="status-103"),
    pytest.param(
        [{"type": START, "status": 204, "headers": [(b"content-length", b"5")]}],
        id="204-with-length",
    ),
    pytest.param(
        [{"type": START, "status": 204}, {"type": BODY, "body": b"hello"}],
        id="204-with-body",
    ),
    pytest.param(
        [{"type": START, "status": 304}, {"type": BODY, "body": b"x", "more_body": True}],
        id="304-with-body",
    ),
]


def _replayer(messages: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/next":
            await send_response(send, 200, b"intact")
            return
        for message in messages:
            await send(message)

    return app


def _mistakes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


@pytest.mark.parametrize("messages", REFUSED)
def test_refused_and_the_next_response_is_intact(
    serve: Serve, messages: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")
    server = serve(_replayer(messages))
    with server.connect() as conn:
        conn.send(get("/bad") + get("/next"))  # pipelined: the follow-up is already waiting
        first = conn.read_response()
        assert first.status == 500, first.raw
        assert not first.closes
        follow = conn.read_response()
        assert (follow.status, follow.body) == (200, b"intact")
    assert len(_mistakes(caplog)) == 1


@pytest.mark.parametrize("status", [204, 304])
def test_body_after_the_head_went_out_closes(
    serve: Serve, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The head is on the wire: no 500 can follow it, so the connection closes after it and the
    pipelined request behind it is not answered on it."""
    caplog.set_level(logging.ERROR, logger="aioworker")

    messages: list[dict[str, Any]] = [
        {"type": START, "status": status},
        {"type": BODY, "body": b"", "more_body": True},  # sends the head
        {"type": BODY, "body": b"stray bytes"},
    ]
    server = serve(_replayer(messages))
    with server.connect() as conn:
        conn.send(get("/bad") + get("/next"))
        first = conn.read_response()
        assert first.status == status
        assert conn.read_until_closed() == b""
    assert len(_mistakes(caplog)) == 1


@pytest.mark.parametrize(
    ("status", "headers", "length"),
    [
        pytest.param(204, [(b"content-length", b"0")], None, id="204-length-0-dropped"),
        pytest.param(304, [(b"content-length", b"1234")], "1234", id="304-length-of-the-200"),
        pytest.param(204, [], None, id="204"),
        pytest.param(304, [(b"etag", b'"x"')], None, id="304"),
    ],
)
def test_no_body_statuses_that_are_fine(
    serve: Serve, status: int, headers: list[tuple[bytes, bytes]], length: str | None
) -> None:
    """What frameworks send: Django adds content-length: 0 to a 204, RFC 9110 section 8.6 lets
    a 304 say the length of the 200 it stands for."""

    server = serve(
        _replayer([{"type": START, "status": status, "headers": headers}, {"type": BODY}])
    )
    with server.connect() as conn:
        conn.send(get("/") + get("/next"))
        first = conn.read_response()
        assert first.status == status
        assert first.header("content-length") == length
        assert conn.read_response().body == b"intact"


def test_head_request_body_is_still_dropped_quietly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aioworker")
    server: ServerThread = serve(_replayer([]))
    with server.connect() as conn:
        conn.send(b"HEAD /next HTTP/1.1\r\nHost: a\r\n\r\n" + get("/next"))
        head = conn.read_response(method="HEAD")
        assert (head.status, head.body, head.header("content-length")) == (200, b"", "6")
        assert conn.read_response().body == b"intact"
    assert _mistakes(caplog) == []


@pytest.mark.parametrize(
    ("status", "line"),
    [
        pytest.param(HTTPStatus.CREATED, "201 Created", id="http-status-enum"),
        pytest.param(599, "599 ", id="unregistered-in-range"),
        pytest.param(200, "200 OK", id="lowest"),
    ],
)
def test_statuses_in_range_are_sent(serve: Serve, status: int, line: str) -> None:
    server = serve(_replayer([{"type": START, "status": status}, {"type": BODY, "body": b"x"}]))
    response = server.get("/")
    assert response.raw.startswith(f"HTTP/1.1 {line}\r\n".encode())
    assert response.body == b"x"
