"""WebSocket echo routes of Starlette, FastAPI, Quart, Litestar and Falcon, unchanged, on the
engine under asyncio and uvloop: handshake, messages both ways, a clean close."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from tests.apps import ws_frameworks
from tests.helpers.engine import Serve

FRAMEWORKS = [
    pytest.param("starlette_app", "/echo", "starlette", id="starlette"),
    pytest.param("fastapi_app", "/fa/echo", "fastapi", id="fastapi"),
    pytest.param("quart_app", "/echo", "quart", id="quart"),
    pytest.param("litestar_app", "/echo", "litestar", id="litestar"),
    pytest.param("falcon_app", "/echo", "falcon", id="falcon"),
]


@pytest.mark.parametrize(("app", "path", "name"), FRAMEWORKS)
def test_framework_websocket_echo(serve: Serve, app: str, path: str, name: str) -> None:
    server = serve(getattr(ws_frameworks, app))
    host, port = server.address[:2]
    with connect(f"ws://{host}:{port}{path}", open_timeout=10, close_timeout=5) as ws:
        for n in range(3):
            ws.send(f"hello {n}")
            assert ws.recv(timeout=10) == f"{name}: hello {n}"
    # The server goes on: a second WebSocket on the same worker.
    with connect(f"ws://{host}:{port}{path}", open_timeout=10) as ws:
        ws.send("again")
        assert ws.recv(timeout=10) == f"{name}: again"
