"""Response heads as bytes: status lines, checked header lines, the Date cache, error responses."""

from __future__ import annotations

import http
import re
import time
from email.utils import formatdate
from typing import Final

__all__ = [
    "CLOSE",
    "KEEP_ALIVE",
    "DateCache",
    "error_response",
    "header_line",
    "status_line",
]

_STATUS_LINES: Final[dict[int, bytes]] = {
    int(s): f"HTTP/1.1 {int(s)} {s.phrase}\r\n".encode("ascii") for s in http.HTTPStatus
}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`, precomputed for every registered status."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} \r\n".encode("ascii")
    return line


def status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class DateCache:
    """The `date:` header line, rebuilt at most once a second (RFC 9110 section 6.6.1).

    formatdate costs ~3 us; at 20k requests a second that is 6% of a core for a value that
    changes once a second. `stamp` is `prefix` (the server header line) and the date line
    together: what the server adds to nearly every response head, in one piece.
    """

    __slots__ = ("_second", "header", "prefix", "stamp")

    def __init__(self, prefix: bytes = b"") -> None:
        self._second = -1
        self.prefix = prefix
        self.header = self.stamp = b""
        self.refresh()

    def refresh(self) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self.header = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
            self.stamp = self.prefix + self.header


# RFC 9110 section 5.1/5.5: a field name is a token; a value holds no CR, LF or NUL. Checking
# what the app sends keeps a header value from an untrusted source from splitting the response.
_INVALID_NAME: Final = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_INVALID_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Kinds of response header, as far as framing is concerned.
PLAIN, LENGTH, DROP, CLOSES, DATE, SERVER = range(6)
_KINDS: Final = {
    b"content-length": LENGTH,
    # The server frames the body and owns the connection (RFC 9112 sections 6.1, 9.3).
    b"transfer-encoding": DROP,
    b"connection": DROP,
    b"date": DATE,
    b"server": SERVER,
}
# Checked and formatted header lines by (name, value): apps send the same few headers on
# every response, and validating plus formatting costs ~1.2 us a header, a lookup ~0.1 us.
# Bounded, so varying values (cookies, lengths) stop being added once it is full.
HEADER_LINES: dict[tuple[bytes, bytes], tuple[bytes, int, int]] = {}
_LINES_MAX: Final = 1024


def header_line(name: bytes, value: bytes) -> tuple[bytes, int, int]:
    """Validate one response header; return its wire line, kind and content length."""
    if _INVALID_NAME.search(name) or _INVALID_VALUE.search(value) or not name:
        raise RuntimeError(f"invalid response header {name!r}: {value!r}")
    kind = _KINDS.get(name.lower(), PLAIN)
    length = 0
    if kind == LENGTH:
        if not value.strip().isdigit():
            raise RuntimeError(f"invalid content-length {value!r}")
        length = int(value)
    elif kind == DROP and name.lower() == b"connection" and b"close" in value.lower():
        kind = CLOSES
    known = (b"%s: %s\r\n" % (name, value), kind, length)
    if len(HEADER_LINES) < _LINES_MAX:
        HEADER_LINES[(name, value)] = known
    return known


CLOSE: Final = b"connection: close\r\n"
KEEP_ALIVE: Final = b"connection: keep-alive\r\n"  # only HTTP/1.0 needs it said
# RFC 9110 section 15.6.4: every 503 the server gives means "overloaded or stopping", so each
# says when to come back rather than leave clients to retry at once.
_RETRY_AFTER: Final = b"retry-after: 1\r\n"


def error_body(status: int) -> bytes:
    """The body of the server's own response for `status`: its reason phrase."""
    return f"{status_phrase(status) or 'Error'}\n".encode("ascii")


def error_response(
    status: int,
    *,
    server_header: bytes = b"",
    date_header: bytes = b"",
    connection: bytes = CLOSE,
    head_only: bool = False,
) -> bytes:
    """The one plain-text response the server gives by itself (bad request, overload, timeout).

    `connection` is CLOSE, KEEP_ALIVE or b""; `head_only` leaves the body out (a HEAD request),
    its content-length still says how long it would be (RFC 9110 section 8.6).
    """
    body = error_body(status)
    return b"".join(
        (
            status_line(status),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            connection,
            _RETRY_AFTER if status == 503 else b"",
            server_header,
            date_header,
            b"\r\n",
            b"" if head_only else body,
        )
    )
