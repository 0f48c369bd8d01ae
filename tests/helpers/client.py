"""The one raw HTTP/1.1 client of the tests: a blocking socket and a strict response reader.

Strict on purpose: a malformed or mis-framed response fails the test instead of being tolerated.
Used against in-process servers (tests/helpers/engine.py) and real masters alike.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_STATUS_LINE = re.compile(rb"HTTP/(1\.[01]) ([1-5][0-9][0-9]) ([\t !-~\x80-\xff]*)")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\t !-~\x80-\xff]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})(;[\t !-~]*)?")


class NoResponse(AssertionError):
    """Nothing (or not enough) arrived before the deadline."""


class IncompleteResponse(AssertionError):
    """The connection closed in the middle of a response."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()


class RawConn:
    """A blocking client socket with a buffer and a strict HTTP/1.1 response reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def connect(cls, address: Any, timeout: float = 5.0) -> RawConn:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(address, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_bytewise(self, data: bytes) -> None:
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline: float, what: str) -> bool:
        """Receive more bytes; False at end of stream. Raise NoResponse at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoResponse(f"timed out waiting for {what}; have {bytes(self.buf[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise NoResponse(
                f"timed out waiting for {what}; have {bytes(self.buf[:300])!r}"
            ) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take_line(self, deadline: float, start: int, raw: bytearray) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", start)
            if end >= 0:
                line = bytes(self.buf[start:end])
                return line
            if not self._fill(deadline, "a line"):
                raise IncompleteResponse("closed in the middle of a line", bytes(self.buf))

    def read_response(self, *, method: str = "GET", timeout: float = 5.0) -> Response:
        """Read exactly one response (a 1xx counts as one) and leave the rest buffered."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > 1 << 20:
                raise AssertionError("response head larger than 1 MiB")
            if not self._fill(deadline, "a response head"):
                if self.buf:
                    raise IncompleteResponse("closed inside a response head", bytes(self.buf))
                raise IncompleteResponse("closed without a response", b"")
        head = bytes(self.buf[:end])
        pos = end + 4
        lines = head.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        assert match, f"bad status line {lines[0]!r}"
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            hmatch = _HEADER_LINE.fullmatch(line)
            assert hmatch, f"bad header line {line!r} in {head!r}"
            headers.append((hmatch[1].decode().lower(), hmatch[2].decode("latin-1")))
        response = Response(match[1].decode(), int(match[2]), match[3].decode("latin-1"), headers)
        te = response.get_all("transfer-encoding")
        cl = response.get_all("content-length")
        status = response.status
        if method == "HEAD" or status < 200 or status in (204, 304):
            pass
        elif te:
            assert not cl, f"both content-length and transfer-encoding in {head!r}"
            assert te == ["chunked"], f"unexpected transfer-encoding {te}"
            response.chunked = True
            pos = self._read_chunked(response, pos, deadline)
        elif cl:
            assert len(cl) == 1, f"several content-length: {cl}"
            assert cl[0].isdigit(), f"bad content-length {cl}"
            length = int(cl[0])
            while len(self.buf) < pos + length:
                if not self._fill(deadline, f"{length} body bytes"):
                    raise IncompleteResponse(
                        f"closed after {len(self.buf) - pos} of {length} body bytes",
                        bytes(self.buf),
                    )
            response.body = bytes(self.buf[pos : pos + length])
            pos += length
        else:
            while self._fill(deadline, "a close-delimited body"):
                pass
            response.body = bytes(self.buf[pos:])
            pos = len(self.buf)
        response.raw = bytes(self.buf[:pos])
        del self.buf[:pos]
        return response

    def _read_chunked(self, response: Response, pos: int, deadline: float) -> int:
        body = bytearray()
        while True:
            line = self._take_line(deadline, pos, self.buf)
            cmatch = _CHUNK_SIZE.fullmatch(line)
            assert cmatch, f"bad chunk size line {line!r}"
            size = int(cmatch[1], 16)
            pos += len(line) + 2
            if size == 0:
                break
            while len(self.buf) < pos + size + 2:
                if not self._fill(deadline, "chunk data"):
                    raise IncompleteResponse("closed inside a chunk", bytes(self.buf))
            body += self.buf[pos : pos + size]
            assert self.buf[pos + size : pos + size + 2] == b"\r\n", "chunk not ended by CRLF"
            pos += size + 2
        while True:  # trailer section
            line = self._take_line(deadline, pos, self.buf)
            pos += len(line) + 2
            if not line:
                break
            tmatch = _HEADER_LINE.fullmatch(line)
            assert tmatch, f"bad trailer line {line!r}"
            response.trailers.append((tmatch[1].decode().lower(), tmatch[2].decode("latin-1")))
        response.body = bytes(body)
        return pos

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything still buffered or arriving until the peer closes; NoResponse if it doesn't."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline, "the connection to close"):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def assert_closed(self, timeout: float = 5.0) -> None:
        """The server closes the connection without sending anything more."""
        data = self.read_until_closed(timeout)
        assert data == b"", f"unexpected bytes before close: {data[:300]!r}"

    def assert_open(self, wait: float = 0.05) -> None:
        """Nothing arrived and the connection is still open (checked for `wait` seconds)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return
        raise AssertionError(f"expected an idle open connection, got {chunk!r}")


def request(
    address: Any,
    raw: bytes,
    *,
    method: str = "GET",
    timeout: float = 5.0,
) -> Response:
    """One request on a fresh connection; returns its response."""
    with RawConn.connect(address, timeout) as conn:
        conn.send(raw)
        return conn.read_response(method=method, timeout=timeout)


def exchange(address: Any, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send `raw` on a fresh connection and return every byte until the peer closes."""
    with RawConn.connect(address, timeout) as conn:
        conn.send(raw)
        return conn.read_until_closed(timeout)


def get(path: str = "/", host: str = "test") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
