"""The ASGI floor: the least any ASGI server on httptools and uvloop does per request.

Where the ceiling (benchmarks/ceiling.py) writes canned bytes, this one runs the real app
(`benchmarks.apps:app`) the way every ASGI server must: parse the request with httptools,
build the scope (the keys the ASGI spec requires), start the app's coroutine in a Task (what
asyncio.current_task(), asyncio.timeout and anyio need), and answer with the head and body the
app sends, in one write. Nothing else: no limits, timeouts, keep-alive timers, flow control,
error pages, Date header, logging or counters, and a malformed request just closes the
connection. It is not a server anyone should run; it shows how far the work an engine adds
can shrink: aioworker's req/s over the floor's is the share the engine's own features cost.

    python -m benchmarks.floor --port 8000    (--port 0: any free port, printed when ready)
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

from benchmarks import ceiling
from benchmarks.apps import app

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


class FloorProtocol(asyncio.Protocol):
    """One connection; one Task per request runs the ASGI app."""

    __slots__ = ("headers", "loop", "parser", "transport", "url")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        path, _, query = self.url.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path.decode("utf-8", "replace"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": None,
            "server": None,
        }
        keep_alive = self.parser.should_keep_alive()
        self.loop.create_task(self._cycle(scope, keep_alive))

    async def _cycle(self, scope: dict[str, Any], keep_alive: bool) -> None:
        head: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                head.append(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")))
                head.extend(b"%s: %s\r\n" % pair for pair in message.get("headers", ()))
                head.append(b"\r\n")
            elif not message.get("more_body"):
                self.transport.write(b"".join(head) + message.get("body", b""))
                if not keep_alive:
                    self.transport.close()

        await app(scope, receive, send)


def main() -> None:
    ceiling.main(FloorProtocol, __doc__ or "", "floor")


if __name__ == "__main__":
    main()
