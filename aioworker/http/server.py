"""Serving an ASGI app inside a running asyncio loop: Server, serve(), start_server() and run().

This is the whole engine of one worker, and the embedding API: the master's workers use
`Server` on the sockets they inherit, programs embed `serve()` in their own loop, and `run()`
is the blocking convenience with its own uvloop loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl as ssl_module
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from aioworker._types import ASGIApp
from aioworker.config import LOG_LEVELS, HttpSettings, Listen, ServerSettings
from aioworker.http.connection import HttpProtocol
from aioworker.http.context import ServerContext
from aioworker.http.counters import LATENCY_BUCKETS, ServerState
from aioworker.http.lifespan import Lifespan, LifespanError, LifespanMode
from aioworker.sockets import bind_listen, describe

__all__ = [
    "LATENCY_BUCKETS",
    "LifespanError",
    "Server",
    "ServerState",
    "new_event_loop",
    "run",
    "serve",
    "start_server",
]

logger = logging.getLogger("aioworker.server")

# A full accept queue makes the kernel drop SYNs and clients retry after a second; a large
# backlog absorbs bursts while the loop is busy (capped by net.core.somaxconn).
_BACKLOG = 2048


class Server:
    """One ASGI app served on one or more listening sockets by this event loop."""

    def __init__(
        self,
        app: ASGIApp,
        settings: HttpSettings | None = None,
        *,
        lifespan: LifespanMode = "auto",
        state: ServerState | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.ssl = ssl  # TLS on every listener when set (an https:// listen)
        self.settings = settings or HttpSettings()
        self.state = state or ServerState()
        self.lifespan = Lifespan(app, lifespan)
        self.sockets: list[socket.socket] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._adopting: set[asyncio.Task[object]] = set()
        self._ctx: ServerContext | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._closing = False
        self._started_lifespan = False
        # Unix socket files this server created: (path, inode), removed once it is closed.
        self._socket_files: list[tuple[str, int]] = []

    async def startup(self) -> None:
        """Run lifespan startup; raise LifespanError if the app says it failed."""
        await self.lifespan.startup()
        self._started_lifespan = True

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        """Start accepting on already bound, listening-capable sockets."""
        loop = asyncio.get_running_loop()
        ctx = self._ctx = ServerContext(self.app, self.settings, self.state, loop)
        ctx.lifespan_state = self.lifespan.state

        def factory() -> HttpProtocol:
            return HttpProtocol(ctx)

        for sock in sockets:
            server: asyncio.AbstractServer
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(
                    factory, sock=sock, backlog=_BACKLOG, ssl=self.ssl
                )
            else:
                server = await loop.create_server(
                    factory, sock=sock, backlog=_BACKLOG, ssl=self.ssl
                )
            self._servers.append(server)
            self.sockets.append(sock)
        self._schedule_tick()

    def adopt(self, sock: socket.socket) -> None:
        """Serve a client connection accepted elsewhere: the master hands a worker the
        connections that were queued on a sibling's listener the sibling could not accept."""
        ctx = self._ctx
        if ctx is None or self._closing:
            sock.close()
            return
        task = ctx.loop.create_task(
            ctx.loop.connect_accepted_socket(lambda: HttpProtocol(ctx), sock)
        )
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[object]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not serve a handed-over connection: %s", task.exception())

    @property
    def closing(self) -> bool:
        """True once close() has begun a graceful stop."""
        return self._closing

    @property
    def connections(self) -> int:
        return len(self._ctx.connections) if self._ctx else 0

    def close(self) -> None:
        """Begin a graceful stop: stop accepting and close idle keep-alive connections now."""
        if self._closing:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        ctx = self._ctx
        if ctx is not None:
            ctx.closing = True
            for conn in list(ctx.connections):
                conn.shutdown()

    def abort(self) -> None:
        """Stop at once: stop accepting, cancel every request in progress and close every
        connection (a second Ctrl-C)."""
        self.close()
        ctx = self._ctx
        if ctx is not None:
            for conn in list(ctx.connections):
                conn.force_close()

    async def wait_closed(self) -> None:
        """Let requests in progress finish (up to graceful_timeout), then run lifespan shutdown."""
        self.close()
        ctx = self._ctx
        if ctx is not None:
            if ctx.connections:
                try:
                    await asyncio.wait_for(ctx.drained.wait(), self.settings.graceful_timeout)
                except asyncio.TimeoutError:
                    pass
            if ctx.connections:
                logger.warning(
                    "graceful timeout (%gs): closing %d connection(s) with requests in progress",
                    self.settings.graceful_timeout,
                    len(ctx.connections),
                )
                tasks = [c.cycle.task for c in ctx.connections if c.cycle and c.cycle.task]
                for conn in list(ctx.connections):
                    conn.force_close()
                if tasks:
                    await asyncio.wait(tasks, timeout=1.0)
        for server in self._servers:
            await server.wait_closed()
        self._remove_socket_files()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._started_lifespan:
            self._started_lifespan = False
            # Bounded like the requests: a shutdown handler that hangs must not keep a worker
            # (and a reload or stop waiting on it) alive forever.
            timeout = self.settings.graceful_timeout
            try:
                await asyncio.wait_for(self.lifespan.shutdown(), timeout or None)
            except asyncio.TimeoutError:
                logger.error(
                    "lifespan shutdown did not finish within %gs; stopping anyway", timeout
                )

    def _remove_socket_files(self) -> None:
        for path, inode in self._socket_files:
            # Only the file we bound: another server may have bound the path again since.
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
        self._socket_files.clear()

    # The tick replaces per-connection timers: see connection.py.
    def _schedule_tick(self) -> None:
        s = self.settings
        timeouts = [s.header_timeout, s.keepalive_timeout, s.body_timeout]
        timeouts += (s.request_timeout, s.send_timeout, s.stream_idle_timeout)
        interval = min(max(min(t for t in timeouts if t > 0) / 4, 0.005), 1.0)
        loop = asyncio.get_running_loop()

        def tick() -> None:
            ctx = self._ctx
            if ctx is None:
                return
            # Rescheduled first: an exception from one connection must not end every
            # connection's timeouts for the rest of the process.
            self._tick_handle = loop.call_later(interval, tick)
            ctx.date.refresh()
            now = time.monotonic()
            for conn in list(ctx.connections):
                conn.check_timeouts(now)

        self._tick_handle = loop.call_later(interval, tick)


def _bind(host: str, port: int, uds: str | None) -> socket.socket:
    return bind_listen(Listen(path=uds) if uds else Listen(host=host, port=port))


async def start_server(
    app: ASGIApp,
    settings: HttpSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    sock: socket.socket | None = None,
    lifespan: LifespanMode = "auto",
    ssl: ssl_module.SSLContext | None = None,
) -> Server:
    """Run lifespan startup and start accepting; return the running Server as a handle.

    Stop it with `server.close()` and `await server.wait_closed()`. `ssl`: serve TLS (https)
    with this context (`aioworker.config.tls.server_context` builds one from PEM files).
    """
    server = Server(app, settings, lifespan=lifespan, ssl=ssl)
    await server.startup()
    own = sock is None
    listener = sock
    try:
        if listener is None:  # inside the try: a taken address must undo startup too
            listener = _bind(host, port, uds)
            if uds:  # ours to remove on close, as uvicorn and hypercorn do
                server._socket_files.append((uds, os.stat(uds).st_ino))
        await server.start([listener])
    except BaseException:
        if own and listener is not None:
            listener.close()
            server._remove_socket_files()
        await server.lifespan.shutdown()
        raise
    for s in server.sockets:
        logger.info("serving on %s", describe(s))
    return server


async def serve(
    app: ASGIApp,
    settings: HttpSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    sock: socket.socket | None = None,
    shutdown_trigger: Awaitable[object] | None = None,
    ready: Callable[[list[socket.socket]], object] | None = None,
    lifespan: LifespanMode = "auto",
    ssl: ssl_module.SSLContext | None = None,
) -> None:
    """Serve `app` in the running loop until `shutdown_trigger` completes (or this is cancelled).

    Lifespan startup runs before the first connection is accepted and shutdown after the last
    request finished (or graceful_timeout passed). `ready(sockets)` is called once accepting.
    """
    try:
        server = await start_server(
            app, settings, host=host, port=port, uds=uds, sock=sock, lifespan=lifespan, ssl=ssl
        )
    except BaseException:
        # Never awaited now: close it, or Python warns "coroutine ... was never awaited".
        if asyncio.iscoroutine(shutdown_trigger):
            shutdown_trigger.close()
        raise
    try:
        if ready is not None:
            ready(list(server.sockets))
        if shutdown_trigger is None:
            await asyncio.get_running_loop().create_future()
        else:
            await shutdown_trigger
    finally:
        server.close()
        await server.wait_closed()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(
    app: ASGIApp,
    settings: HttpSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    uds: str | None = None,
    sock: socket.socket | None = None,
    lifespan: LifespanMode = "auto",
    log_level: str = ServerSettings().log_level,
) -> None:
    """Serve `app` in a new uvloop loop until SIGINT or SIGTERM, then stop gracefully: requests
    in progress finish (up to graceful_timeout) and lifespan shutdown runs. A second signal
    stops at once: requests in progress are cancelled, lifespan shutdown is skipped."""
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log_level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        again = asyncio.Event()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if not stop.is_set():
                logger.info("%s: stopping gracefully (send it again to stop at once)", name)
                stop.set()
            else:
                logger.warning("%s again: stopping at once", name)
                again.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        server = await start_server(
            app, settings, host=host, port=port, uds=uds, sock=sock, lifespan=lifespan
        )
        await stop.wait()
        closing = loop.create_task(server.wait_closed())
        cut = loop.create_task(again.wait())
        await asyncio.wait({closing, cut}, return_when=asyncio.FIRST_COMPLETED)
        cut.cancel()
        if not closing.done():
            server.abort()
            closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        logger.info("stopped")

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(main())
    else:  # pragma: no cover - 3.10
        loop = new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
