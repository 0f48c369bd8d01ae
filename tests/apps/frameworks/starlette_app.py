"""The comparison app in Starlette."""

from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def json(request: Request) -> Response:
    return JSONResponse({"a": 1, "b": [1, 2]})


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


async def query(request: Request) -> Response:
    return PlainTextResponse(request.query_params.get("q", ""))


async def header(request: Request) -> Response:
    return PlainTextResponse(request.headers.get("x-probe", ""))


async def created(request: Request) -> Response:
    return PlainTextResponse("created", status_code=201)


async def fail(request: Request) -> Response:
    raise RuntimeError("probe")


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/json", json),
        Route("/stream", stream),
        Route("/query", query),
        Route("/header", header),
        Route("/created", created),
        Route("/raise", fail),
    ]
)
