"""Strict routes: a group answers 404 for paths outside its route prefixes.

A group's ``routes`` tell the front proxy which paths to send it; with ``strict_routes = true``
the group also refuses every other path itself, so a request that reaches its port directly
(a misconfigured proxy, a health checker, a curious client) can never run a fast route in the
slow group or a slow route in the fast one.

Prefixes match as they do in the generated nginx config (see aioworker/nginx.py): a route
``/task`` matches ``/task`` and ``/task/...`` but not ``/taskforce``; a route ``/task/`` matches
``/task/...`` only; ``/`` matches everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aioworker._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["matcher", "strict_routes"]

_BODY = b"Not Found: this path is not served here\n"
_START: Message = {
    "type": "http.response.start",
    "status": 404,
    "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(_BODY)).encode()),
    ],
}


def matcher(routes: Sequence[str]) -> Callable[[str], bool] | None:
    """A predicate telling whether a path is inside `routes`; None when every path is."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for route in routes:
        if route == "/":
            return None
        if route.endswith("/"):
            prefixes.append(route)
        else:
            exact.add(route)
            prefixes.append(route + "/")
    if not prefixes:
        return None
    starts = tuple(prefixes)

    def inside(path: str) -> bool:
        return path in exact or path.startswith(starts)

    return inside


def strict_routes(app: ASGIApp, routes: Sequence[str]) -> ASGIApp:
    """Wrap `app` so HTTP paths outside `routes` get a plain 404 and WebSocket handshakes there
    are refused (a close before accept: 403); lifespan passes through.

    Returns `app` itself when the routes cover every path (``/`` or no routes: the default
    group), so the default group pays nothing.
    """
    inside = matcher(routes)
    if inside is None:
        return app

    async def strict(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or inside(scope["path"]):
            await app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        # The body is left unread; the engine discards it and keeps the connection when it can.
        await send(dict(_START))
        await send({"type": "http.response.body", "body": _BODY})

    return strict
