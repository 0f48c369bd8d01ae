"""FastAPI and Starlette WebSocket echo apps, written as their documentation shows.

`fastapi_app` serves /fa/echo, `starlette_app` serves /echo; both echo text and bytes until the
client closes. Nothing in them knows which server runs them.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocketDisconnect
from fastapi import WebSocket as FastAPIWebSocket
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
