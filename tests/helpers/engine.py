"""In-process engine servers: event loops, a server thread, a cross-thread gate, small apps.

Every engine test runs twice, under asyncio's own loop and under uvloop (LOOPS). A ServerThread
runs an aioworker Server in a background thread with its own loop, on 127.0.0.1 port 0; the
tests talk to it from the main thread with the raw client of tests/helpers/client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from aioworker._types import ASGIApp, Receive, Scope, Send
from aioworker.config import HttpSettings
from tests.helpers.client import RawConn, Response, get, request

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


Serve = Callable[..., "ServerThread"]  # the `serve` fixture: serve(app, settings, ...)


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

    async def hold(self) -> None:
        """Tell the test this point was reached (`entered`), then wait until it calls open().

        A gate nobody opens holds until the server cancels the request (a stuck app).
        """
        self.entered.set()
        await self.wait()

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


# --------------------------------------------------------------------------- common apps


async def read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with 200 "hello"; ignores lifespan."""
    if scope["type"] != "http":
        return
    await send_response(send, 200, b"hello", [(b"content-type", b"text/plain")])


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and sends it back; ignores lifespan."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    await send_response(send, 200, body)


async def path_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with 200 and its path as the body; ignores lifespan."""
    if scope["type"] != "http":
        return
    await send_response(send, 200, scope["path"].encode())


def gated(gate: Gate, app: ASGIApp, path: str = "/slow") -> ASGIApp:
    """`app`, except that a request for `path` first holds at `gate` (see Gate.hold)."""

    async def gated_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == path:
            await gate.hold()
        await app(scope, receive, send)

    return gated_app


def shutdown_recorder(
    order: list[str], hold: Callable[[], Awaitable[object]], body: bytes
) -> ASGIApp:
    """An app whose requests await `hold()`, answer 200 `body` and append "responded" to `order`;
    at lifespan shutdown it appends "shutdown", so a test sees which came first."""

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            order.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        await hold()
        await send_response(send, 200, body)
        order.append("responded")

    return recorder
