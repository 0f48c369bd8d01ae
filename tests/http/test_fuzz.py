"""Property tests: generated and mutated requests never hang or kill a live server.

For any bytes a client sends (then half-closes), the server answers with well-formed responses
and/or closes within a deadline, nothing reaches the event loop's exception handler, and the
same server still serves a normal request afterwards.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers.client import NoResponse, RawConn
from tests.helpers.engine import FAST, ServerThread, read_body, send_response
from tests.helpers.wait import wait_until

LIMITS = dataclasses.replace(
    FAST, max_url_bytes=512, max_header_bytes=2048, max_headers=16, max_body_bytes=4096
)
DEADLINE = 5.0
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CORPUS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /p%20q?x=1&y HTTP/1.1\r\nHost: a\r\nX-A: b\r\nX-A: c\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"PUT /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/abs?q HTTP/1.1\r\nHost: a\r\n\r\n",
]


async def fuzz_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
        return
    body = await read_body(receive)
    await send_response(send, 200, body[:64] + scope["raw_path"][:64])


def _exchange(server: ServerThread, raw: bytes) -> None:
    """Send raw bytes, half-close, and read well-formed responses until the server closes."""
    with server.connect(timeout=DEADLINE) as conn:
        try:
            conn.send(raw)
            conn.shutdown_write()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: allowed
        responses = 0
        while True:
            if not conn.buf and conn.eof:
                break
            if not conn.buf:
                try:
                    if not conn._fill(_deadline(), "a response or the close"):
                        break
                except NoResponse:
                    raise AssertionError(
                        f"server neither answered nor closed for {raw!r}"
                    ) from None
            response = conn.read_response(timeout=DEADLINE)
            assert 100 <= response.status <= 599
            event(f"status {response.status}")
            responses += 1
            assert responses <= 2 * (raw.count(b"HTTP/") + 1), "more responses than requests"
    ok = server.request(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
    assert ok.status == 200, ok.raw
    # Every connection is gone once its client is: nothing leaks, nothing stays in progress.
    state = server.server.state
    wait_until(
        lambda: server.call(lambda: (state.connections, state.in_progress)) == (0, 0),
        DEADLINE,
        f"connections to close after {raw!r}",
    )


def _deadline() -> float:
    return time.monotonic() + DEADLINE


# --------------------------------------------------------------------------- strategies

_tokens = st.sampled_from(
    [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"G\x00T", b""]
)
_targets = st.one_of(
    st.sampled_from([b"/", b"*", b"/a?b", b"http://h/x", b"//", b"/%", b"/%zz", b"/\xff"]),
    st.binary(max_size=40),
)
_versions = st.one_of(
    st.just(b"HTTP/1.1"),
    st.just(b"HTTP/1.1"),
    st.sampled_from(
        [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.", b"http/1.1", b"HTTP/1.1 "]
    ),
)
# Mostly plausible names and values, so that many requests get past the parser to the app.
_names = st.one_of(
    st.sampled_from(
        [
            b"Host",
            b"Content-Length",
            b"Transfer-Encoding",
            b"Connection",
            b"Expect",
            b"X-Forwarded-For",
            b"Forwarded",
            b"Upgrade",
        ]
    ),
    st.sampled_from([b"X-Custom", b"Accept", b"Cookie"]),
    st.binary(min_size=0, max_size=12),
)
_values = st.one_of(
    st.sampled_from(
        [
            b"a",
            b"0",
            b"5",
            b"-1",
            b"99999999999999999999",
            b"chunked",
            b"gzip, chunked",
            b"chunked, gzip",
            b"close",
            b"keep-alive",
            b"100-continue",
            b"websocket",
            b"1.2.3.4, 5.6.7.8",
            b"for=1.2.3.4;proto=https",
        ]
    ),
    st.text(alphabet="abc 019;=,", max_size=12).map(str.encode),
    st.binary(max_size=20),
)
_chunks = st.lists(
    st.tuples(
        st.sampled_from([b"", b"0", b"5", b"ff", b"-1", b"x", b"10000"]), st.binary(max_size=8)
    ),
    max_size=4,
)


@st.composite
def generated_requests(draw: st.DrawFn) -> bytes:
    line = b"%s %s %s\r\n" % (draw(_tokens), draw(_targets), draw(_versions))
    headers = b"".join(
        b"%s: %s\r\n" % pair for pair in draw(st.lists(st.tuples(_names, _values), max_size=6))
    )
    if draw(st.integers(0, 3)):  # mostly with the Host header a 1.1 request needs
        headers = b"Host: a\r\n" + headers
    if draw(st.booleans()):
        body = b"".join(b"%s\r\n%s\r\n" % chunk for chunk in draw(_chunks)) + b"0\r\n\r\n"
    else:
        body = draw(st.binary(max_size=16))
    return line + headers + b"\r\n" + body


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "crlf"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\n", b"\r", b" ", b"\t", b"\x00"]))
    return bytes(data)


def test_generated_requests(serve: Any) -> None:
    server = serve(fuzz_app, LIMITS)

    @FUZZ
    @given(raw=generated_requests())
    def check(raw: bytes) -> None:
        _exchange(server, raw)

    check()


def test_mutated_requests(serve: Any) -> None:
    server = serve(fuzz_app, LIMITS)

    @FUZZ
    @given(raw=mutated_requests())
    def check(raw: bytes) -> None:
        _exchange(server, raw)

    check()


def test_corpus_is_valid(serve: Any) -> None:
    """The seeds themselves are served normally, each on its own connection."""
    server = serve(fuzz_app, LIMITS)
    for raw in CORPUS:
        with RawConn.connect(server.address) as conn:
            conn.send(raw)
            response = conn.read_response()
            if response.status == 100:
                response = conn.read_response()
            assert response.status == 200, (raw, response.raw)
