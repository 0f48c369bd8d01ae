"""The comparison app in Litestar."""

from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream


@get("/hello", media_type=MediaType.TEXT)
async def hello() -> str:
    return "hello"


@post("/echo", status_code=200)
async def echo(request: Request[Any, Any, State]) -> Response[bytes]:
    return Response(await request.body(), media_type="application/octet-stream")


@get("/json")
async def json() -> dict[str, object]:
    return {"a": 1, "b": [1, 2]}


@get("/stream")
async def stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    return Stream(chunks(), media_type=MediaType.TEXT)


@get("/query", media_type=MediaType.TEXT)
async def query(q: str = "") -> str:
    return q


@get("/header", media_type=MediaType.TEXT)
async def header(request: Request[Any, Any, State]) -> str:
    return request.headers.get("x-probe", "")


@get("/created", media_type=MediaType.TEXT, status_code=201)
async def created() -> str:
    return "created"


@get("/raise")
async def fail() -> None:
    raise RuntimeError("probe")


app = Litestar([hello, echo, json, stream, query, header, created, fail])
