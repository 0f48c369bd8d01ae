"""The comparison app in Falcon (ASGI)."""

from collections.abc import AsyncIterator

import falcon
import falcon.asgi


class Hello:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "hello"


class Echo:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = "application/octet-stream"
        resp.data = await req.stream.read()


class Json:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"a": 1, "b": [1, 2]}


class Stream:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in (b"a", b"b", b"c"):
                yield chunk

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = chunks()


class Query:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = req.get_param("q") or ""


class Header:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = req.get_header("x-probe") or ""


class Created:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.status = 201
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "created"


class Raise:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        raise RuntimeError("probe")


app = falcon.asgi.App()
for route, resource in (
    ("/hello", Hello()),
    ("/echo", Echo()),
    ("/json", Json()),
    ("/stream", Stream()),
    ("/query", Query()),
    ("/header", Header()),
    ("/created", Created()),
    ("/raise", Raise()),
):
    app.add_route(route, resource)
