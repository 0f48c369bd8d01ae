"""A real redis-server for a test: started on a free port, without persistence, stopped after.

Readiness is a PING answered on the socket, never a fixed sleep. `RedisServer.stop()` and
`start()` let a test take Redis away mid-run and bring it back on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers.ports import free_port

__all__ = ["RedisServer", "redis_server", "run_in_thread"]


def _binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise RuntimeError("redis-server is missing: run scripts/install (Debian redis-server)")
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="aioworker-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        # (certfile, keyfile): also listen for TLS on tls_port (readiness is still a PING on
        # the plain port).
        self.tls = tls
        self.tls_port = free_port() if tls else 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0"

    @property
    def unix_url(self) -> str:
        """The same server on its unix socket (beside the TCP port)."""
        return f"unix://{self.directory}/redis.sock"

    def start(self, timeout: float = 10.0) -> None:
        tls: list[str] = []
        if self.tls:
            cert, key = self.tls
            tls = ["--tls-port", str(self.tls_port), "--tls-cert-file", str(cert)]
            tls += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
            tls += ["--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [
                _binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--maxclients",
                "10000",
                "--unixsocket",
                f"{self.directory}/redis.sock",
                "--unixsocketperm",
                "700",
                *tls,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.01)  # polling the real condition (a PONG), not waiting for time

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in RESP, its raw reply (enough for the tests' counters)."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as sock:
            sock.sendall(payload)
            return sock.recv(65536)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def run_in_thread(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, None]
) -> None:
    """Run `coro` to the end on a new loop in a thread, as the engine tests' servers run (uvloop's
    close() on pytest's main thread did not return here)."""
    failures: list[BaseException] = []

    def main() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(coro)
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the scenario did not finish"
    if failures:
        raise failures[0]
