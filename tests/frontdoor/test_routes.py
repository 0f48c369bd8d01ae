"""strict_routes: 404 for HTTP paths outside the routes, WebSocket refused, lifespan untouched."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from aioworker.frontdoor.routes import matcher, strict_routes

Message = MutableMapping[str, Any]


async def inner(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the path it saw; records lifespan and websocket scopes."""
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        return
    if scope["type"] != "http":
        await send({"type": "seen", "scope": scope["type"], "path": scope.get("path")})
        return
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("routes", "path", "inside"),
    [
        pytest.param(["/task"], "/task", True, id="bare-prefix"),
        pytest.param(["/task"], "/task/", True, id="prefix-slash"),
        pytest.param(["/task"], "/task/sleep", True, id="below-prefix"),
        pytest.param(["/task"], "/taskforce", False, id="longer-word-outside"),
        pytest.param(["/task"], "/tas", False, id="shorter-outside"),
        pytest.param(["/task"], "/", False, id="root-outside"),
        pytest.param(["/task"], "/info", False, id="other"),
        pytest.param(["/task/"], "/task/x", True, id="slash-route-below"),
        pytest.param(["/task/"], "/task", False, id="slash-route-bare"),
        pytest.param(["/task", "/report"], "/report/1", True, id="second-route"),
        pytest.param(["/a/b"], "/a/b/c", True, id="nested-route"),
        pytest.param(["/a/b"], "/a", False, id="nested-route-parent"),
    ],
)
def test_matcher(routes: list[str], path: str, inside: bool) -> None:
    match = matcher(routes)
    assert match is not None
    assert match(path) is inside


@pytest.mark.parametrize("routes", [[], ["/"], ["/task", "/"]])
def test_everything_allowed_returns_app_unchanged(routes: list[str]) -> None:
    assert matcher(routes) is None
    assert strict_routes(inner, routes) is inner


def run_asgi(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        if scope["type"] == "lifespan":
            return {"type": "lifespan.startup"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_lifespan_passes_through() -> None:
    sent = run_asgi(strict_routes(inner, ["/task"]), {"type": "lifespan"})
    assert sent == [{"type": "lifespan.startup.complete"}]


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        pytest.param("/task/ws", [{"type": "seen", "scope": "websocket", "path": "/task/ws"}],
                     id="inside-passes"),
        pytest.param("/other", [{"type": "websocket.close", "code": 1008}], id="outside-refused"),
    ],
)  # fmt: skip
def test_websocket(path: str, sent: list[Message]) -> None:
    scope = {"type": "websocket", "path": path}
    assert run_asgi(strict_routes(inner, ["/task"]), scope) == sent


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        pytest.param("/task/sleep", 200, b"/task/sleep", id="inside"),
        pytest.param("/task", 200, b"/task", id="bare"),
        pytest.param("/taskforce", 404, b"Not Found: this path is not served here\n", id="word"),
        pytest.param("/info", 404, b"Not Found: this path is not served here\n", id="outside"),
    ],
)
def test_over_a_real_server(path: str, status: int, body: bytes) -> None:
    from aioworker.http.server import start_server

    async def main() -> httpx.Response:
        server = await start_server(strict_routes(inner, ["/task"]), host="127.0.0.1", port=0)
        try:
            port = server.sockets[0].getsockname()[1]
            async with httpx.AsyncClient() as client:
                # Two requests on one connection: a 404 keeps the connection open.
                first = await client.get(f"http://127.0.0.1:{port}{path}")
                second = await client.get(f"http://127.0.0.1:{port}{path}")
                assert first.status_code == second.status_code
                return second
        finally:
            server.close()
            await server.wait_closed()

    response = asyncio.run(main())
    assert response.status_code == status
    assert response.content == body
    assert response.headers.get("connection", "keep-alive") != "close"
    if status == 404:
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
