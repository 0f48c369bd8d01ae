"""An app whose requests wait on a gate the test opens: for the stopping tests (Ctrl-C, TERM).

`GET /` answers the scope's scheme (http or https). `GET /gate` marks `GATE WAITING pid=P` on
stderr, then waits until a line arrives on the FIFO named by the environment variable GATE (the
test made it with os.mkfifo) and answers 200 with that line. Lifespan shutdown marks
`LIFESPAN SHUTDOWN pid=P`. So a test knows a request is in progress, holds it there for as long
as it likes and ends it when it chooses, without a sleep.

`python -m tests.apps.gated` serves it with `aioworker.run_app` (embedded, no master) on a port
of its own: it prints `READY PORT` on stdout first.
"""

from __future__ import annotations

import asyncio
import os

from aioworker._types import Receive, Scope, Send


def mark(text: str) -> None:
    # One write per line: the master and its workers share this pipe.
    os.write(2, (text + "\n").encode())


async def _read_gate() -> bytes:
    loop = asyncio.get_running_loop()
    # Non-blocking: the open succeeds at once, and no writer has come yet, so the FIFO is not
    # readable (Linux reports no hang-up before a first writer).
    fd = os.open(os.environ["GATE"], os.O_RDONLY | os.O_NONBLOCK)
    opened: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not opened.done():
            opened.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await opened
        return os.read(fd, 4096).strip()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        mark(f"LIFESPAN SHUTDOWN pid={os.getpid()}")
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/gate":
        mark(f"GATE WAITING pid={os.getpid()}")
        body = await _read_gate()
    else:
        body = scope["scheme"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    from aioworker import HttpSettings, run_app
    from tests.helpers.child import ready_socket

    sock = ready_socket()
    run_app(app, HttpSettings(graceful_timeout=30.0), sock=sock)
    mark("EXITED")
