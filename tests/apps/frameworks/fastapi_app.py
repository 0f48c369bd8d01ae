"""The comparison app in FastAPI."""

from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

app = FastAPI()


@app.get("/hello", response_class=PlainTextResponse)
async def hello() -> str:
    return "hello"


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


@app.get("/json")
async def json() -> dict[str, object]:
    return {"a": 1, "b": [1, 2]}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/query", response_class=PlainTextResponse)
async def query(q: str = "") -> str:
    return q


@app.get("/header", response_class=PlainTextResponse)
async def header(request: Request) -> str:
    return request.headers.get("x-probe", "")


@app.get("/created", response_class=PlainTextResponse, status_code=201)
async def created() -> str:
    return "created"


@app.get("/raise")
async def fail() -> None:
    raise RuntimeError("probe")
