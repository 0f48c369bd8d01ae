"""The comparison app in Quart."""

from collections.abc import AsyncIterator

from quart import Quart, Response, request

app = Quart(__name__)


@app.get("/hello")
async def hello() -> Response:
    return Response("hello", content_type="text/plain; charset=utf-8")


@app.post("/echo")
async def echo() -> Response:
    return Response(await request.get_data(), content_type="application/octet-stream")


@app.get("/json")
async def json() -> dict[str, object]:
    return {"a": 1, "b": [1, 2]}


@app.get("/stream")
async def stream() -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    return Response(chunks(), content_type="text/plain")


@app.get("/query")
async def query() -> Response:
    return Response(request.args.get("q", ""), content_type="text/plain; charset=utf-8")


@app.get("/header")
async def header() -> Response:
    return Response(request.headers.get("x-probe", ""), content_type="text/plain; charset=utf-8")


@app.get("/created")
async def created() -> Response:
    return Response("created", status=201, content_type="text/plain; charset=utf-8")


@app.get("/raise")
async def fail() -> Response:
    raise RuntimeError("probe")
