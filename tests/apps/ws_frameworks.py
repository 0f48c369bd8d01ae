"""WebSocket echo apps in five frameworks, each written as its documentation shows.

`fastapi_app` serves /fa/echo; `starlette_app`, `quart_app`, `litestar_app` and `falcon_app`
serve /echo. Each answers a text message with its framework's name and the text, until the
client closes. Nothing in them knows which server runs them.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
from fastapi import FastAPI, WebSocketDisconnect
from fastapi import WebSocket as FastAPIWebSocket
from litestar import Litestar
from litestar import WebSocket as LitestarWebSocket
from litestar import websocket as litestar_websocket
from litestar.exceptions import WebSocketDisconnect as LitestarDisconnect
from quart import Quart
from quart import websocket as quart_websocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

fastapi_app = FastAPI()


@fastapi_app.websocket("/fa/echo")
async def fastapi_echo(websocket: FastAPIWebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text("fastapi: " + message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


async def starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text("starlette: " + text)


starlette_app = Starlette(routes=[WebSocketRoute("/echo", starlette_echo)])


quart_app = Quart(__name__)


@quart_app.websocket("/echo")
async def quart_echo() -> None:
    while True:
        data = await quart_websocket.receive()
        if isinstance(data, bytes):
            await quart_websocket.send(data)
        else:
            await quart_websocket.send("quart: " + data)


@litestar_websocket("/echo")
async def litestar_echo(socket: LitestarWebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    try:
        while True:
            text = await socket.receive_text()
            await socket.send_text("litestar: " + text)
    except LitestarDisconnect:
        return


litestar_app = Litestar(route_handlers=[litestar_echo])


class FalconEcho:
    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        await ws.accept()
        while True:
            try:
                text = await ws.receive_text()
            except falcon.WebSocketDisconnected:
                return
            await ws.send_text("falcon: " + text)


falcon_app = falcon.asgi.App()
falcon_app.add_route("/echo", FalconEcho())
