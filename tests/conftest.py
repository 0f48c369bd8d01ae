"""Shared test fixtures: event-loop parametrization, live servers, and a raw-socket HTTP client.

Every engine test runs twice, under asyncio's own loop and under uvloop (`loop_name`). A live
server (`serve` fixture) runs in a background thread with its own loop, on 127.0.0.1 port 0; the
tests talk to it from the main thread with blocking sockets and a deliberately strict response
reader, so a malformed or mis-framed response fails the test instead of being tolerated.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from aioworker.config import HttpSettings

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

# Short limits so that every timeout test takes well under a second.
FAST = HttpSettings(
    header_timeout=2.0,
    body_timeout=2.0,
    keepalive_timeout=2.0,
    request_timeout=10.0,
    graceful_timeout=2.0,
)


@pytest.fixture(params=sorted(LOOPS))
def loop_name(request: pytest.FixtureRequest) -> str:
    """The event loop implementation this test runs under: "asyncio" or "uvloop"."""
    return str(request.param)


@pytest.fixture
def loop_factory(loop_name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    return LOOPS[loop_name]


def run_in_loop(loop_factory: Callable[[], asyncio.AbstractEventLoop], coro: Awaitable[Any]) -> Any:
    """asyncio.run() with a chosen loop implementation (asyncio.Runner is 3.11+)."""
    loop = loop_factory()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


# --------------------------------------------------------------------------- cross-thread gate


class Gate:
    """An app running on the server's loop awaits `wait()`; the test thread calls `open()`.

    `entered` is a threading.Event the app sets so the test knows it got that far.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._opened = False
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._opened:
                return
            self._waiters.append((loop, future))
        await future

    def open(self) -> None:
        with self._lock:
            self._opened = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --------------------------------------------------------------------------- strict response reader

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


def get(path: str = "/", host: str = "test") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


# --------------------------------------------------------------------------- live server thread


class ServerThread:
    """An aioworker Server on its own loop in a background thread, on 127.0.0.1 port 0."""

    def __init__(
        self,
        app: Any,
        settings: HttpSettings,
        loop_factory: Callable[[], asyncio.AbstractEventLoop],
        *,
        lifespan: str = "auto",
        uds: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.loop_factory = loop_factory
        self.lifespan = lifespan
        self.uds = uds
        self.address: Any = None
        self.server: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_errors: list[dict[str, Any]] = []
        self.startup_error: BaseException | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError("server did not start in time")
        if self.startup_error is not None:
            self._thread.join(timeout)
            raise self.startup_error
        return self

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)
        loop.default_exception_handler(context)

    def _run(self) -> None:
        loop = self.loop = self.loop_factory()
        loop.set_exception_handler(self._on_loop_error)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self.startup_error = exc
            else:
                self.loop_errors.append({"message": "server thread failed", "exception": exc})
        finally:
            self._ready.set()
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _main(self) -> None:
        from aioworker.http.server import Server

        self._stop = asyncio.Event()
        if self.uds:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.uds)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        self.address = sock.getsockname()
        try:
            self.server = Server(self.app, self.settings, lifespan=self.lifespan)  # type: ignore[arg-type]
            try:
                await self.server.startup()
            except BaseException as exc:
                self.startup_error = exc
                return
            try:
                await self.server.start([sock])
            except BaseException as exc:
                self.startup_error = exc
                return
            self._ready.set()
            await self._stop.wait()
            self.server.close()
            await self.server.wait_closed()
        finally:
            sock.close()

    # -- control from the test thread ------------------------------------------------------

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run fn() on the server's loop and return its result."""
        assert self.loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def close(self) -> None:
        """Begin a graceful shutdown (Server.close() then wait_closed()) without waiting."""
        if self._closing or self.loop is None or self._stop is None:
            return
        self._closing = True
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._stop.set)

    def wait_stopped(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "server did not stop in time"

    def stop(self, timeout: float = 10.0) -> None:
        self.close()
        self.wait_stopped(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # -- client helpers ------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> RawConn:
        return RawConn.connect(self.address, timeout)

    def request(self, raw: bytes, *, method: str = "GET", timeout: float = 5.0) -> Response:
        return request(self.address, raw, method=method, timeout=timeout)

    def get(self, path: str = "/", timeout: float = 5.0) -> Response:
        return self.request(get(path), timeout=timeout)

    @property
    def url(self) -> str:
        host, port = self.address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def serve(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> Iterator[Callable[..., ServerThread]]:
    """Factory: serve(app, settings=FAST, lifespan="auto") -> a started ServerThread.

    At teardown every server is shut down gracefully; an exception that reached the event
    loop's exception handler (a bug: the engine must handle everything itself) fails the test.
    """
    started: list[ServerThread] = []

    def start(
        app: Any,
        settings: HttpSettings | None = None,
        *,
        lifespan: str = "auto",
        uds: str | None = None,
    ) -> ServerThread:
        server = ServerThread(app, settings or FAST, loop_factory, lifespan=lifespan, uds=uds)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()
    errors = [context for server in started for context in server.loop_errors]
    assert not errors, f"exceptions reached the event loop: {errors}"


# --------------------------------------------------------------------------- common apps


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def send_response(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with 200 "hello"; ignores lifespan."""
    if scope["type"] != "http":
        return
    await send_response(send, 200, b"hello", [(b"content-type", b"text/plain")])


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and sends it back; ignores lifespan."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    await send_response(send, 200, body)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll a condition the server changes on its own (counters, closed sockets) until true."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        pause.wait(0.005)


@pytest.fixture
def no_orphans() -> Iterator[None]:
    """A failed test must not leave a child started by observe_helpers.fork running."""
    from tests.helpers.observe import kill_children

    yield
    kill_children()
