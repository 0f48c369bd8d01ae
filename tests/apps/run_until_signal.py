"""`aioworker.http.server.run()` in a process of its own, for the signal tests of test_embedding.

`python -m tests.apps.run_until_signal` prints `READY PORT`, then `STARTUP`, answers "run" to any
request, and on SIGTERM or SIGINT prints `SHUTDOWN` (lifespan) and `EXITED` (run() returned).
"""

from __future__ import annotations

from aioworker._types import Receive, Scope, Send
from aioworker.config import HttpSettings
from aioworker.http.server import run
from tests.helpers.child import ready_socket


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        print("STARTUP", flush=True)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        print("SHUTDOWN", flush=True)
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]}
    )
    await send({"type": "http.response.body", "body": b"run"})


if __name__ == "__main__":
    sock = ready_socket()
    run(app, HttpSettings(graceful_timeout=2.0), sock=sock)
    print("EXITED", flush=True)
