"""The server's own plain-text error responses, as bytes: one renderer for every status it gives."""

from __future__ import annotations

import pytest

from aioworker.http.response import CLOSE, KEEP_ALIVE, error_response

SERVER = b"server: t\r\n"
DATE = b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"


def _parse(raw: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        assert name not in headers, f"{name!r} twice in {raw!r}"
        headers[name] = value
    return status_line, headers, body


ERRORS = [
    # status, connection header, a HEAD request, phrase, retry-after
    pytest.param(400, CLOSE, False, b"Bad Request", None, id="400"),
    pytest.param(408, CLOSE, False, b"Request Timeout", None, id="408"),
    pytest.param(500, b"", False, b"Internal Server Error", None, id="500-keep-alive-1.1"),
    pytest.param(503, CLOSE, False, b"Service Unavailable", b"1", id="503-says-retry-after"),
    pytest.param(503, KEEP_ALIVE, False, b"Service Unavailable", b"1", id="503-keep-alive-1.0"),
    pytest.param(504, CLOSE, True, b"Gateway Timeout", None, id="504-head-request-no-body"),
    pytest.param(599, CLOSE, False, b"", None, id="unregistered-status"),
]


@pytest.mark.parametrize(("status", "connection", "head_only", "phrase", "retry_after"), ERRORS)
def test_error_response(
    status: int, connection: bytes, head_only: bool, phrase: bytes, retry_after: bytes | None
) -> None:
    raw = error_response(
        status, server_header=SERVER, date_header=DATE, connection=connection, head_only=head_only
    )
    status_line, headers, sent = _parse(raw)
    assert status_line == b"HTTP/1.1 %d %s" % (status, phrase)
    body = (phrase or b"Error") + b"\n"
    assert sent == (b"" if head_only else body)
    # A HEAD response's length is that of the body a GET would get (RFC 9110 section 8.6).
    assert headers[b"content-length"] == b"%d" % len(body)
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers.get(b"connection") == (connection[len(b"connection: ") : -2] or None)
    assert headers.get(b"retry-after") == retry_after
    assert headers[b"server"] == b"t"
    assert headers[b"date"] == DATE[len(b"date: ") : -2]
