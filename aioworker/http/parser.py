"""HTTP/1.1 request parsing: bytes in, events out, no I/O (httptools/llhttp underneath).

`RequestParser.feed(data)` returns the events found in `data`: a `RequestHead` when a request's
head is complete, `Body` chunks, and `END` at the end of each message; pipelined requests simply
produce several heads in one list. Every problem is a `ParseError` carrying the status to answer
with, after which the connection must be closed: httptools exceptions never leave this module.
"""

from __future__ import annotations

from typing import Final, NoReturn

import httptools

from aioworker.config import HttpSettings

__all__ = ["END", "Body", "EndOfMessage", "Event", "ParseError", "RequestHead", "RequestParser"]


class ParseError(Exception):
    """The request cannot be served; answer `status` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # What the same feed() completed before the bad bytes: pipelined requests that
        # precede an error are still answered, in order.
        self.events: list[Event] = []


class RequestHead:
    """A complete request line and header section."""

    # RequestParser.on_headers_complete sets these slots itself, without __init__ (a Python
    # call per request): a new field is added there too (tests/http/test_parser.py checks).
    # A NamedTuple built by tuple.__new__ was slower overall (+960 instructions per request):
    # 3.11 specialises attribute reads of slots, not of a named tuple's fields.

    __slots__ = (
        "content_length",
        "expect_continue",
        "forwarded",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "query_string",
        "raw_path",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        expect_continue: bool,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        # None: chunked or no body framing; otherwise the announced body size.
        self.content_length = content_length
        self.expect_continue = expect_continue
        self.upgrade = False
        # Whether a proxy header is among the headers: only then are they searched for one.
        self.forwarded = any(name in _PROXY for name, _ in headers)


class Body:
    """A piece of the current request's body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfMessage:
    """The current request (head and body) is complete."""

    __slots__ = ()


END: Final = EndOfMessage()
Event = RequestHead | Body | EndOfMessage

# RFC 9112 section 7: the only transfer coding aioworker decodes is chunked (llhttp does it).
_CHUNKED: Final = b"chunked"
_OWS: Final = (0x20, 0x09)  # optional whitespace: space and tab
# Bytes looked for by value: `b"#" in url` first tries b"#" as an int, raising and clearing a
# formatted TypeError (~2,100 instructions); `0x23 in url` costs ~100.
_HASH: Final = ord("#")
# The method names as str, one dict lookup instead of a decode per request.
_METHODS: Final = {
    m: m.decode("ascii")
    for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
}
_new_object: Final = object.__new__
# The proxy headers forwarded.py reads (RequestHead.forwarded).
_PROXY: Final = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"x-real-ip"))
# The header fields the parser itself reads: framing, Host and Expect, and notes: _PROXY.
_FRAMING: Final = frozenset((b"content-length", b"transfer-encoding", b"host", b"expect"))
_NOTED: Final = _FRAMING | _PROXY
_LIMITS: Final = HttpSettings()  # the defaults of a parser built without the server's settings


class RequestParser:
    """Incremental request parser for one connection, enforcing the configured limits."""

    __slots__ = (
        "_begun",
        "_body_bytes",
        "_error",
        "_events",
        "_head_bytes",
        "_headers",
        "_parser",
        "_raw_head",
        "_upgrade_left",
        "_url",
        "in_head",
        "max_body_bytes",
        "max_header_bytes",
        "max_headers",
        "max_url_bytes",
    )

    def __init__(
        self,
        *,
        max_url_bytes: int = _LIMITS.max_url_bytes,
        max_header_bytes: int = _LIMITS.max_header_bytes,
        max_headers: int = _LIMITS.max_headers,
        max_body_bytes: int = _LIMITS.max_body_bytes,
    ) -> None:
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._raw_head = 0
        self._begun = 0  # messages begun so far
        self._upgrade_left = 0  # body bytes of an Upgrade request still to come
        self._body_bytes = 0
        # True while a request head has started but is not complete (for timeouts). A plain
        # attribute, not a property: the connection reads it after every read.
        self.in_head = False
        self._error: ParseError | None = None

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; return the events it completes. Raise ParseError on bad input."""
        # One method, not a wrapper around a second one: a Python call is ~1% of a
        # hello-world request. Every ParseError leaves with the events completed before it.
        events: list[Event] = []
        self._events = events
        if self._upgrade_left:
            return self._upgrade_body(data, events)
        was_in_head = self.in_head
        begun = self._begun
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at an Upgrade/CONNECT request. aioworker does not switch protocols:
            # the request is served as plain HTTP and the connection closed after it, so the
            # bytes that follow are never interpreted as a second request.
            head: RequestHead | None = None
            for event in reversed(events):  # the last head; earlier pipelined ones are plain
                if isinstance(event, RequestHead):
                    event.upgrade = True
                    event.keep_alive = False
                    head = event
                    break
            if head is not None and head.method != "CONNECT" and events[-1] is END:
                # httptools makes llhttp skip the body of an Upgrade request; served as plain
                # HTTP (RFC 9110 section 7.8) it would reach the app empty, and `curl --http2
                # --data x` sends one. Its Content-Length body is taken here instead.
                if head.content_length != 0:
                    events.pop()  # not the end of this message after all
                if head.content_length is None:
                    error = ParseError(501, "chunked body on an Upgrade request")
                    error.events = events
                    raise error from None
                if head.content_length:
                    self._upgrade_left = head.content_length
                    self._upgrade_body(data[exc.args[0] :], events)
            return events
        except httptools.HttpParserCallbackError:
            error = self._error or ParseError(400, "invalid request")
            error.events = events
            raise error from None
        except httptools.HttpParserError as exc:
            error = self._error or ParseError(400, _reason(exc))
            error.events = events
            raise error from None
        if self.in_head and was_in_head and self._begun == begun:
            # httptools buffers an incomplete header line internally, so callbacks alone would
            # not see a client that sends one endless header: count raw bytes too, but only
            # when all of `data` belongs to one unfinished head. Adding a whole read that also
            # held complete pipelined requests refused healthy pipelines with 431.
            self._raw_head += len(data)
            if self._raw_head > self.max_header_bytes:
                error = ParseError(431, "request header section too large")
                error.events = events
                raise error
        return events

    def _upgrade_body(self, data: bytes, events: list[Event]) -> list[Event]:
        take = data[: self._upgrade_left]
        if take:
            self._upgrade_left -= len(take)
            events.append(Body(take))
        if not self._upgrade_left:
            events.append(END)
        return events

    # -- httptools callbacks (called from inside feed_data) -----------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._raw_head = 0
        self._begun += 1
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        # on_url may be called several times for one request target split across reads.
        self._url += url
        if len(self._url) > self.max_url_bytes:
            self._fail(414, "request target too long")
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # A trailer field after a chunked body. Appending it would change the headers of a
            # scope the app already holds (a trailing "authorization" read as a header):
            # RFC 9110 section 6.5.1 forbids merging them. Dropped, but bounded all the same.
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > self.max_header_bytes:
                self._fail(431, "trailer section too large")
            return
        # llhttp drops leading whitespace but keeps trailing; RFC 9112 section 5 excludes both.
        if value and value[-1] in _OWS:
            value = value.rstrip(b" \t")
        headers = self._headers
        headers.append((name.lower(), value))
        self._head_bytes += len(name) + len(value) + 4
        # One comparison per header: the count limit bounds the list; the byte limit is
        # checked once the head is complete (and on raw bytes while a head spans reads).
        if len(headers) > self.max_headers:
            self._fail(431, "too many header fields")

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._head_bytes > self.max_header_bytes:
            self._fail(431, "request header section too large")
        parser = self._parser
        http_version = parser.get_http_version()
        content_length: int | None = None
        expect_continue = False
        # Every Transfer-Encoding line, judged as one list (RFC 9110 section 5.3): "gzip" then
        # "chunked" on two lines is "gzip, chunked", a 501, not a 400 for a non-final chunked.
        codings: bytes | None = None
        hosts = 0
        forwarded = False
        for name, value in self._headers:
            if name not in _NOTED:  # one set lookup instead of five comparisons per field
                continue
            if name in _PROXY:
                forwarded = True
            elif name == b"host":
                hosts += 1
            elif name == b"content-length":
                # llhttp already refuses duplicates, lists and non-digits (RFC 9112 6.3).
                content_length = int(value)
            elif name == b"transfer-encoding":
                codings = value if codings is None else codings + b"," + value
            elif name == b"expect" and value.lower() == b"100-continue":
                expect_continue = http_version == "1.1"
        chunked = codings is not None and self._check_transfer_coding(codings)
        # llhttp also accepts 0.9 and 2.0 request lines; ASGI has no HTTP/1-framed "2.0" and
        # 0.9 has no headers to answer with (RFC 9110 section 15.6.6).
        if http_version not in ("1.1", "1.0"):
            self._fail(505, f"HTTP/{http_version} not supported")
        # RFC 9112 section 3.2: a 1.1 request without exactly one Host is answered 400.
        if http_version == "1.1" and hosts != 1:
            self._fail(400, "missing Host header" if not hosts else "several Host headers")
        max_body = self.max_body_bytes
        if content_length is not None and max_body and content_length > max_body:
            # Refuse before reading: the client may be about to send gigabytes.
            self._fail(413, "request body too large")
        method = parser.get_method()
        url = self._url
        if url[:1] == b"/":  # origin-form, nearly every request: split here, no helper call
            if _HASH in url:
                url = url.partition(b"#")[0]
            raw_path, _, query_string = url.partition(b"?")
        else:
            raw_path, query_string = self._split_target(url, method)
        if chunked:
            content_length = None
        elif content_length is None:
            content_length = 0
        # Filled in here rather than through RequestHead.__init__: a Python call fewer.
        head = _new_object(RequestHead)
        head.method = _METHODS.get(method) or method.decode("ascii")
        head.raw_path = raw_path
        head.query_string = query_string
        head.http_version = http_version
        head.headers = self._headers
        # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
        # framing for any 1.0 hop in front; serve it, then close the connection.
        head.keep_alive = parser.should_keep_alive() and not (chunked and http_version == "1.0")
        head.content_length = content_length
        head.expect_continue = expect_continue
        head.upgrade = False
        head.forwarded = forwarded
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        if self.max_body_bytes:
            self._body_bytes += len(body)
            if self._body_bytes > self.max_body_bytes:
                self._fail(413, "request body too large")
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._events.append(END)

    # -- helpers ---------------------------------------------------------------------------

    def _split_target(self, url: bytes, method: bytes) -> tuple[bytes, bytes]:
        """Split a request target that is not origin-form (RFC 9112 section 3.2)."""
        if url == b"*" or method == b"CONNECT":  # asterisk-form and authority-form
            return url, b""
        try:  # absolute-form, as sent to proxies
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            self._fail(400, "invalid request target")
        return parsed.path or b"/", parsed.query or b""

    def _check_transfer_coding(self, value: bytes) -> bool:
        codings = [c.strip().lower() for c in value.split(b",")]
        # RFC 9112 section 6.3: when chunked is not the final coding the body length cannot
        # be determined, which must be answered 400; a coding we cannot decode is 501.
        if codings[-1] != _CHUNKED:
            self._fail(400, "chunked must be the final transfer coding")
        if len(codings) > 1:
            self._fail(501, f"transfer coding {codings[0].decode('latin-1')!r} not implemented")
        return True

    def _fail(self, status: int, reason: str) -> NoReturn:
        self._error = ParseError(status, reason)
        raise self._error


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("`", "")
