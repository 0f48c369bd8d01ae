"""The comparison app in Django (ASGI handler, no database)."""

from collections.abc import AsyncIterator

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="comparison-only",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello", content_type="text/plain; charset=utf-8")


@csrf_exempt
async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


async def json(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"a": 1, "b": [1, 2]})


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def query(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.GET.get("q", ""), content_type="text/plain; charset=utf-8")


async def header(request: HttpRequest) -> HttpResponse:
    value = request.headers.get("x-probe", "")
    return HttpResponse(value, content_type="text/plain; charset=utf-8")


async def created(request: HttpRequest) -> HttpResponse:
    return HttpResponse("created", status=201, content_type="text/plain; charset=utf-8")


async def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("probe")


urlpatterns = [
    path("hello", hello),
    path("echo", echo),
    path("json", json),
    path("stream", stream),
    path("query", query),
    path("header", header),
    path("created", created),
    path("raise", fail),
]

app = get_asgi_application()
