"""End to end: real Starlette and FastAPI apps served by aioworker, driven by httpx and curl."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, File, Form, UploadFile
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from tests.helpers.engine import Serve, ServerThread

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "data.bin"
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    return path


def starlette_app(data_file: Path) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan"}

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("home")

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["id"], "q": request.query_params.get("q")})

    async def echo_json(request: Request) -> JSONResponse:
        return JSONResponse({"got": await request.json()})

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def file(request: Request) -> FileResponse:
        return FileResponse(data_file, media_type="application/octet-stream")

    async def upload(request: Request) -> JSONResponse:
        async with request.form() as form:
            upload = form["file"]
            assert not isinstance(upload, str)
            content = await upload.read()
            return JSONResponse(
                {
                    "name": form["name"],
                    "filename": upload.filename,
                    "size": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )

    async def state(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.greeting)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/items/{id:int}", item),
            Route("/json", echo_json, methods=["POST"]),
            Route("/stream", stream),
            Route("/file", file),
            Route("/upload", upload, methods=["POST"]),
            Route("/state", state),
        ],
        lifespan=lifespan,
    )


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def fastapi_app(data_file: Path) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan"}

    api = FastAPI(lifespan=lifespan)

    @api.get("/", response_class=PlainTextResponse)
    async def home() -> str:
        return "home"

    @api.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"id": item_id, "q": q}

    @api.post("/json")
    async def echo_json(item: Item) -> dict[str, Any]:
        return {"got": item.model_dump()}

    @api.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"chunk{i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @api.get("/file")
    async def file() -> FileResponse:
        return FileResponse(data_file, media_type="application/octet-stream")

    @api.post("/upload")
    async def upload(
        name: Annotated[str, Form()], file: Annotated[UploadFile, File()]
    ) -> dict[str, Any]:
        content = await file.read()
        return {
            "name": name,
            "filename": file.filename,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }

    @api.get("/state", response_class=PlainTextResponse)
    async def state(request: Request) -> str:
        return str(request.state.greeting)

    return api


APPS: dict[str, Callable[[Path], Any]] = {"starlette": starlette_app, "fastapi": fastapi_app}


@pytest.fixture(params=sorted(APPS))
def server(request: pytest.FixtureRequest, serve: Serve, data_file: Path) -> ServerThread:
    return serve(APPS[request.param](data_file), lifespan="on")


JSON_BODY = {"name": "widget", "price": 2.5, "tags": ["a", "b"]}


@pytest.mark.slow
def test_httpx(server: ServerThread, data_file: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/")
        assert (response.status_code, response.text) == (200, "home")
        assert response.headers["server"] == "aioworker"

        assert client.get("/items/42", params={"q": "x y"}).json() == {"id": 42, "q": "x y"}
        assert client.get("/missing").status_code == 404

        response = client.post("/json", json=JSON_BODY)
        assert response.status_code == 200
        assert response.json() == {"got": JSON_BODY}

        with client.stream("GET", "/stream") as streamed:
            assert streamed.headers.get("transfer-encoding") == "chunked"
            assert "".join(streamed.iter_text()) == "".join(f"chunk{i}\n" for i in range(5))

        response = client.get("/file")
        assert response.content == data_file.read_bytes()
        assert response.headers["content-length"] == str(data_file.stat().st_size)

        response = client.get("/file", headers={"Range": "bytes=10-19"})
        assert response.status_code == 206
        assert response.content == data_file.read_bytes()[10:20]

        payload = bytes(range(256)) * 1000
        response = client.post(
            "/upload", data={"name": "n1"}, files={"file": ("up.bin", payload, "text/plain")}
        )
        assert response.json() == {
            "name": "n1",
            "filename": "up.bin",
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }

        assert client.get("/state").text == "hello from lifespan"

        # All of the above went over one keep-alive connection pool; it still works after.
        assert client.head("/").status_code in (200, 405)


def _curl(*args: str) -> tuple[int, bytes]:
    assert CURL is not None, "curl is required (scripts/install installs it)"
    result = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        check=True,
        timeout=20,
    )
    body, _, code = result.stdout.rpartition(b"\n")
    return int(code), body


def _curl_json(url: str, data: str, *args: str) -> tuple[int, Any]:
    """POST `data` (text, or @FILE as curl reads it) as JSON; returns (status, parsed body)."""
    code, body = _curl(*args, "-H", "content-type: application/json", "--data-binary", data, url)
    return code, json.loads(body)


@pytest.mark.slow
def test_curl(server: ServerThread, data_file: Path, tmp_path: Path) -> None:
    url = server.url
    assert _curl(f"{url}/") == (200, b"home")
    code, body = _curl(f"{url}/items/7?q=curl")
    assert (code, json.loads(body)) == (200, {"id": 7, "q": "curl"})
    assert _curl_json(f"{url}/json", json.dumps(JSON_BODY)) == (200, {"got": JSON_BODY})
    assert _curl(f"{url}/stream") == (200, "".join(f"chunk{i}\n" for i in range(5)).encode())
    code, body = _curl(f"{url}/file")
    assert code == 200
    assert body == data_file.read_bytes()
    upload = tmp_path / "upload.txt"
    upload.write_bytes(b"form upload via curl\n" * 5000)
    code, body = _curl("-F", "name=c1", "-F", f"file=@{upload}", f"{url}/upload")
    assert code == 200
    assert json.loads(body) == {
        "name": "c1",
        "filename": "upload.txt",
        "size": upload.stat().st_size,
        "sha256": hashlib.sha256(upload.read_bytes()).hexdigest(),
    }
    # curl sends Expect: 100-continue for large bodies: the server must answer it.
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"name": "x" * 2_000_000, "price": 1.0}))
    code, parsed = _curl_json(f"{url}/json", f"@{big}")
    assert code == 200
    assert len(parsed["got"]["name"]) == 2_000_000
    assert _curl(f"{url}/state") == (200, b"hello from lifespan")
    # curl --http2 on http:// asks to upgrade to h2c, with the body: served as HTTP/1.1.
    assert _curl_json(f"{url}/json", json.dumps(JSON_BODY), "--http2") == (200, {"got": JSON_BODY})
