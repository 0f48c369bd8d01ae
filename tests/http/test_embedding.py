"""Embedding: serve() and start_server() inside a running loop, and run() in its own process."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aioworker._types import Receive, Scope, Send
from aioworker.config.tls import server_context
from aioworker.http.server import serve, start_server
from tests.helpers.child import start_ready
from tests.helpers.client import request as raw_request
from tests.helpers.engine import FAST, read_body, run_in_loop, send_response, shutdown_recorder
from tests.helpers.tls import client_context, self_signed

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


async def fetch(
    address: Any, path: str = "/", *, body: bytes = b"", timeout: float = 5.0
) -> tuple[int, bytes]:
    """One request with Connection: close over asyncio streams; returns (status, body)."""
    if isinstance(address, str):
        reader, writer = await asyncio.open_unix_connection(address)
    else:
        reader, writer = await asyncio.open_connection(*address[:2])
    try:
        method = "POST" if body else "GET"
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data
    return int(head[9:12]), rest


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["greeting"] = "hi"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = await read_body(receive)
    greeting = scope["state"].get("greeting", "-")
    await send_response(send, 200, f"{greeting} {scope['path']} {body.decode()}".encode())


def test_serve_host_port(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        ready: asyncio.Future[list[socket.socket]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                app,
                FAST,
                host="127.0.0.1",
                port=0,
                shutdown_trigger=stop.wait(),
                ready=ready.set_result,
            )
        )
        sockets = await asyncio.wait_for(ready, 5)
        address = sockets[0].getsockname()
        assert address[1] != 0
        assert await fetch(address, "/x", body=b"data") == (200, b"hi /x data")
        stop.set()
        await asyncio.wait_for(task, 5)
        with pytest.raises(ConnectionRefusedError):
            await fetch(address)

    run_in_loop(loop_factory, main())


@pytest.fixture
def uds_path() -> Iterator[str]:
    """A unix socket path in a fresh short-named directory (such paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="aw") as tmp:
        yield os.path.join(tmp, "s.sock")


async def serve_unix_once(path: str, label: str) -> None:
    """serve() on the unix socket `path` while one request for /LABEL is answered, then stop."""
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(app, FAST, uds=path, shutdown_trigger=stop.wait(), ready=lambda s: ready.set())
    )
    await asyncio.wait_for(ready.wait(), 5)
    assert await fetch(path, f"/{label}") == (200, f"hi /{label} ".encode())
    stop.set()
    await asyncio.wait_for(task, 5)


def test_serve_unix_socket(loop_factory: LoopFactory, uds_path: str) -> None:
    run_in_loop(loop_factory, serve_unix_once(uds_path, "u"))
    assert not os.path.exists(uds_path)  # the socket file it created is removed on close


def test_a_unix_socket_file_bound_again_by_another_server_is_left_alone(
    loop_factory: LoopFactory, uds_path: str
) -> None:
    async def main() -> None:
        first = await start_server(app, FAST, uds=uds_path)
        os.unlink(uds_path)  # someone takes the path over while the first still serves
        second = await start_server(app, FAST, uds=uds_path)
        first.close()
        await first.wait_closed()
        assert await fetch(uds_path, "/x") == (200, b"hi /x ")
        second.close()
        await second.wait_closed()
        assert not os.path.exists(uds_path)

    run_in_loop(loop_factory, main())


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_an_address_this_process_holds_is_in_use_by_this_process_and_no_coroutine_leaks(
    loop_factory: LoopFactory, uds_path: str, where: str
) -> None:
    async def main() -> None:
        holder = await start_server(app, FAST, port=0, uds=uds_path if where == "unix" else None)
        taken = (
            {"uds": uds_path} if where == "unix" else {"port": holder.sockets[0].getsockname()[1]}
        )
        try:
            with pytest.raises(OSError, match="in use by this process"):
                await serve(app, FAST, shutdown_trigger=asyncio.Event().wait(), **taken)
        finally:
            holder.close()
            await holder.wait_closed()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_in_loop(loop_factory, main())
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert [str(w.message) for w in caught] == []


@pytest.fixture
def bound() -> Iterator[socket.socket]:
    """A TCP socket bound to a free port of 127.0.0.1 (not listening), closed after the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def test_serve_on_passed_socket(loop_factory: LoopFactory, bound: socket.socket) -> None:
    address = bound.getsockname()

    async def main() -> None:
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(
            serve(app, FAST, sock=bound, shutdown_trigger=stop.wait(), ready=lambda s: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 5)
        assert await fetch(address, "/s") == (200, b"hi /s ")
        stop.set()
        await asyncio.wait_for(task, 5)

    run_in_loop(loop_factory, main())


def test_start_server_handle(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        server = await start_server(app, FAST, host="127.0.0.1", port=0)
        address = server.sockets[0].getsockname()
        assert await fetch(address, "/h") == (200, b"hi /h ")
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        with pytest.raises(ConnectionRefusedError):
            await fetch(address)

    run_in_loop(loop_factory, main())


def test_startup_runs_before_accepting(loop_factory: LoopFactory, bound: socket.socket) -> None:
    """A request that arrives during lifespan startup is only answered once startup is done."""
    bound.listen(16)
    address = bound.getsockname()

    async def main() -> None:
        in_startup = asyncio.Event()
        finish_startup = asyncio.Event()
        answered: list[str] = []

        async def slow_start(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                await receive()
                in_startup.set()
                await finish_startup.wait()
                scope["state"]["ready"] = "yes"
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
                return
            answered.append(scope["state"]["ready"])
            await send_response(send, 200, b"ok")

        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(slow_start, FAST, sock=bound, shutdown_trigger=stop.wait())
        )
        await asyncio.wait_for(in_startup.wait(), 5)
        request = asyncio.create_task(fetch(address))
        done, _ = await asyncio.wait({request}, timeout=0.2)
        assert not done, "answered before startup completed"
        finish_startup.set()
        assert await asyncio.wait_for(request, 5) == (200, b"ok")
        assert answered == ["yes"]
        stop.set()
        await asyncio.wait_for(task, 5)

    run_in_loop(loop_factory, main())


def test_shutdown_after_draining(loop_factory: LoopFactory) -> None:
    async def main() -> None:
        order: list[str] = []
        entered = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            entered.set()
            await release.wait()

        draining = shutdown_recorder(order, hold, b"drained")

        stop = asyncio.Event()
        ready: asyncio.Future[list[socket.socket]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(draining, FAST, port=0, shutdown_trigger=stop.wait(), ready=ready.set_result)
        )
        address = (await ready)[0].getsockname()
        request = asyncio.create_task(fetch(address))
        await asyncio.wait_for(entered.wait(), 5)
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert not done, "serve() returned with a request in progress"
        assert order == []
        release.set()
        assert await asyncio.wait_for(request, 5) == (200, b"drained")
        await asyncio.wait_for(task, 5)
        assert order == ["responded", "shutdown"]

    run_in_loop(loop_factory, main())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_stops_on_signal(signum: int) -> None:
    proc, port = start_ready("tests.apps.run_until_signal", stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTUP"
        response = raw_request(
            ("127.0.0.1", port), b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert (response.version, response.status, response.body) == ("1.1", 200, b"run")
        assert not response.chunked
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out.split() == ["SHUTDOWN", "EXITED"], (out, err)
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_unix_socket_twice(loop_factory: LoopFactory, uds_path: str) -> None:
    """A restart on the same unix socket path works (a stale socket file is no obstacle)."""

    async def main() -> None:
        await serve_unix_once(uds_path, "first")
        await serve_unix_once(uds_path, "second")

    run_in_loop(loop_factory, main())


def test_start_server_bind_failure_runs_lifespan_shutdown(
    loop_factory: LoopFactory, bound: socket.socket
) -> None:
    """When the address is taken, the app's startup is undone (shutdown) and the error raised."""
    events: list[str] = []

    async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        events.append("startup")
        await send({"type": "lifespan.startup.complete"})
        await receive()
        events.append("shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    bound.listen(1)  # the port is taken

    async def main() -> None:
        with pytest.raises(OSError, match="in use"):
            await start_server(tracked, FAST, host="127.0.0.1", port=bound.getsockname()[1])

    run_in_loop(loop_factory, main())
    # Startup never run (bound first), or undone: never left started with nothing served.
    assert events in ([], ["startup", "shutdown"])


def test_start_server_serves_tls_with_scheme_https(loop_factory: LoopFactory) -> None:
    async def scheme(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send_response(send, 200, scope["scheme"].encode())

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))

        async def main() -> None:
            context = server_context(str(cert), str(key))
            server = await start_server(scheme, FAST, port=0, lifespan="off", ssl=context)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(cert)
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            server.close()
            await server.wait_closed()
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert data.endswith(b"\r\n\r\nhttps")

        run_in_loop(loop_factory, main())
