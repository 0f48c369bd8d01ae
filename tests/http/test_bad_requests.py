"""Bad requests: each gets its status and a closed connection, and the server keeps serving."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.helpers.engine import (
    FAST,
    Gate,
    Serve,
    ServerThread,
    echo_app,
    gated,
)

LIMITS = dataclasses.replace(
    FAST, max_url_bytes=1024, max_header_bytes=4096, max_headers=20, max_body_bytes=1000
)

H = b"Host: test\r\n"

BAD_REQUESTS = [
    # request line (RFC 9112 section 3)
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="no-target-no-version"),
    pytest.param(b"GET /\r\n\r\n", 505, id="http-0.9"),
    pytest.param(b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505, id="version-0.9"),
    pytest.param(b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, id="version-2.0-in-http1"),
    pytest.param(b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400, id="version-1.2"),
    pytest.param(b"GET / HTTP/1.1 extra\r\n" + H + b"\r\n", 400, id="extra-token"),
    pytest.param(b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400, id="bad-method-char"),
    pytest.param(b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400, id="bad-version-minor"),
    pytest.param(b"GET / http/1.1\r\n" + H + b"\r\n", 400, id="lowercase-version"),
    pytest.param(b"GET / HTTP/11\r\n" + H + b"\r\n", 400, id="version-no-dot"),
    pytest.param(b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400, id="space-in-target"),
    pytest.param(b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400, id="nul-in-target"),
    pytest.param(b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n", 400, id="del-in-target"),
    # header section (RFC 9112 section 5)
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", 400, id="header-no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b": empty\r\n\r\n", 400, id="empty-header-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", 400, id="space-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-\x01A: b\r\n\r\n", 400, id="ctl-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n", 400, id="separator-in-name"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400, id="ctl-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400, id="del-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400, id="bare-cr-in-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400, id="obs-fold-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n X-A: a\r\n" + H + b"\r\n", 400, id="leading-ws-line"),
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="missing-host"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400, id="two-hosts"),
    # message framing (RFC 9112 section 6)
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        400,
        id="cl-and-te",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        400,
        id="te-and-cl",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        id="differing-cl",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!", 400, id="cl-list"
    ),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400, id="cl-alpha"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, id="cl-negative"),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400, id="cl-plus"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400, id="cl-hex"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nhello", 400, id="cl-space"
    ),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400, id="cl-empty"),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999999\r\n\r\n",
        400,
        id="cl-overflow",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nhello", 400, id="te-gzip-only"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        id="te-chunked-not-final",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
        id="te-split-gzip-first",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"
        b"\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        id="te-split-chunked-first",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        id="te-split-three-gzip-last",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: x-custom\r\nTransfer-Encoding: gzip, "
        b"chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
        id="te-split-list-and-line",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        400,
        id="te-gzip-only-no-body",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunkedx\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
        id="te-chunkedx",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: x-custom, chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        501,
        id="te-unknown-coding",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
        id="upgrade-with-chunked-body",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
        id="chunk-size-not-hex",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        400,
        id="chunk-size-negative",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
        id="chunk-size-0x",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        400,
        id="chunk-size-overflow",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
        400,
        id="chunk-size-empty",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
        id="chunk-data-no-crlf",
    ),
    # limits
    pytest.param(b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, id="url-too-long"),
    pytest.param(
        b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 5000 + b"\r\n\r\n", 431, id="header-too-big"
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n",
        431,
        id="too-many-headers",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\n"
        + H
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 300) for i in range(15))
        + b"\r\n",
        431,
        id="header-section-too-big",
    ),
    # No "100 Continue" first: the final answer comes at once (RFC 9110 section 10.1.1).
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 1001\r\n\r\n",
        413,
        id="cl-too-big-expect-continue",
    ),
    # Only the head is sent: the 413 must come before any of the body is read.
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n", 413, id="cl-too-big"
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
        b"X-Trailer: " + b"t" * 5000 + b"\r\n\r\n",
        431,
        id="trailers-too-big",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"200\r\n" + b"x" * 512 + b"\r\n200\r\n" + b"x" * 512 + b"\r\n0\r\n\r\n",
        413,
        id="chunked-too-big",
    ),
]


@pytest.fixture
def server(serve: Serve) -> ServerThread:
    return serve(echo_app, LIMITS)


def _assert_rejected(server: ServerThread, raw: bytes, status: int, *, bytewise: bool) -> None:
    with server.connect() as conn:
        if bytewise:
            # The server may answer and close before the last byte: that is fine.
            try:
                conn.send_bytewise(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            conn.send(raw)
        response = conn.read_response()
        assert response.status == status, response.raw
        assert response.closes, "an error response must announce connection: close"
        assert b"Traceback" not in response.body
        conn.assert_closed()
    # The same server still serves a normal request.
    ok = server.request(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nok")
    assert (ok.status, ok.body) == (200, b"ok")


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS)
def test_bad_request_whole(server: ServerThread, raw: bytes, status: int) -> None:
    _assert_rejected(server, raw, status, bytewise=False)


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS)
def test_bad_request_bytewise(server: ServerThread, raw: bytes, status: int) -> None:
    _assert_rejected(server, raw, status, bytewise=True)


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS)
def test_bad_request_after_good_one(server: ServerThread, raw: bytes, status: int) -> None:
    """Pipelined behind a valid request: the first is answered, then the error, then close."""
    good = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nfirst"
    with server.connect() as conn:
        conn.send(good + raw)
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"first")
        response = conn.read_response()
        assert response.status == status, response.raw
        conn.assert_closed()


def test_body_refused_before_reading(server: ServerThread) -> None:
    """413 arrives while the client is still holding the announced gigabyte."""
    with server.connect() as conn:
        conn.send(b"PUT /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1073741824\r\n\r\n")
        response = conn.read_response(timeout=2.0)
        assert response.status == 413
        conn.assert_closed()


def test_bad_body_of_pipelined_request(serve: Any) -> None:
    """A queued request whose body turns out bad is answered 400 after the one in progress."""
    gate = Gate()

    app = gated(gate, echo_app)

    server = serve(app, LIMITS)
    with server.connect() as conn:
        conn.send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nslow")
        assert gate.entered.wait(5)
        conn.send(
            b"POST /next HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        # Sent separately, so that the head above was already queued when this arrives.
        server.call(lambda: None)
        conn.send(b"zz\r\n")
        conn.assert_open(wait=0.1)
        gate.open()
        first = conn.read_response()
        assert (first.status, first.body) == (200, b"slow")
        second = conn.read_response()
        assert second.status == 400
        conn.assert_closed()


def test_endless_header_line_gets_431(server: ServerThread) -> None:
    """One header line that never ends, sent in pieces: refused once past the limit."""
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Endless: ")
        for _ in range(16):
            server.call(lambda: None)  # let the server read each piece on its own
            try:
                conn.send(b"v" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = conn.read_response()
        assert response.status == 431
        conn.read_until_closed()


def test_reads_that_end_inside_pipelined_heads(server: ServerThread) -> None:
    """Reads holding many small pipelined requests and ending mid-head are not 431."""
    one = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
    with server.connect() as conn:
        conn.send(one + one[:20])
        assert conn.read_response().body == b"ok"
        # Completes the open head, then more than max_header_bytes of whole requests, then
        # ends inside another head: none of it is one large head.
        conn.send(one[20:] + one * 200 + one[:20])
        for _ in range(201):
            assert conn.read_response().body == b"ok"
        conn.send(one[20:])
        assert conn.read_response().body == b"ok"
