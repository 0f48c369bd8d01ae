"""The ceiling: an httptools + uvloop protocol that answers every request with canned bytes.

No ASGI, no scope, no app, no Date header: just parse and write prebuilt bytes. No Python
HTTP server on this stack can be faster, so the harness reports every server as a share of it.

    python -m benchmarks.ceiling --port 8000    (--port 0: any free port, printed when ready)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any

import httptools
import uvloop


def _response(body: bytes, status: bytes = b"200 OK") -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    return head % (status, len(body)) + body


# The same routes as benchmarks.apps, answered from memory.
RESPONSES: dict[bytes, bytes] = {
    b"/": _response(b"Hello, world!"),
    b"/bytes/65536": _response(b"x" * 65536),
    b"/bytes/1048576": _response(b"x" * 1048576),
    b"/upload": _response(b"1048576"),
}
NOT_FOUND = _response(b"not found", b"404 Not Found")


class CannedProtocol(asyncio.Protocol):
    """One connection: every complete request gets the canned response for its path."""

    __slots__ = ("parser", "transport", "url")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_response(b"bad request", b"400 Bad Request"))
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        self.transport.write(RESPONSES.get(path, NOT_FOUND))
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(
    host: str,
    port: int,
    protocol: Callable[[], asyncio.Protocol] = CannedProtocol,
    name: str = "ceiling",
) -> None:
    """Serve `protocol` until SIGINT or SIGTERM; the ready line gives `name` and the port."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, finish)
    server = await loop.create_server(protocol, host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(f"{name} listening on http://{host}:{bound}", flush=True)
    await stop
    server.close()
    await server.wait_closed()


def main(
    protocol: Callable[[], asyncio.Protocol] = CannedProtocol,
    doc: str = __doc__,
    name: str = "ceiling",
) -> None:
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, protocol, name))


if __name__ == "__main__":
    main()
