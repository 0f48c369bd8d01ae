"""A server whose Python cannot import `websockets`, as without the aioworker[ws] extra.

`python -m tests.apps.ws_missing LOOP` prints `READY PORT` once it listens, then serves the
WebSocket test app until SIGTERM.
"""

from __future__ import annotations

import sys

sys.modules["websockets"] = None  # type: ignore[assignment]  # every import of it fails

import asyncio  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

import uvloop  # noqa: E402

from aioworker.http.server import serve  # noqa: E402
from tests.apps.wsapp import WsApp  # noqa: E402


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    def ready(sockets: list[socket.socket]) -> None:
        print("READY", sockets[0].getsockname()[1], flush=True)

    await serve(WsApp(), sock=sock, ready=ready, shutdown_trigger=stop.wait())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    factory = uvloop.new_event_loop if sys.argv[1] == "uvloop" else asyncio.new_event_loop
    loop = factory()
    loop.run_until_complete(main())
    loop.close()
