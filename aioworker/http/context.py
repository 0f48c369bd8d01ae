"""What every connection of one server shares: the app, settings, counters and header bytes."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aioworker._types import ASGIApp
from aioworker.config import HttpSettings
from aioworker.http.counters import ServerState
from aioworker.http.forwarded import ProxyHeaders
from aioworker.http.response import DateCache

__all__ = ["ConnectionLike", "CycleLike", "ServerContext"]


class CycleLike(Protocol):
    """What the server needs of a connection's request in progress."""

    @property
    def task(self) -> asyncio.Task[None] | None: ...


class ConnectionLike(Protocol):
    """What the server does with an open connection (`connection.HttpProtocol`), declared
    here so that this module, which the connection imports, needs no import of it."""

    @property
    def cycle(self) -> CycleLike | None: ...

    def check_timeouts(self, now: float) -> None: ...

    def shutdown(self) -> None: ...

    def force_close(self) -> None: ...


class ServerContext:
    """Built once by server.Server; each connection and request cycle reads it."""

    __slots__ = (
        "app",
        "closing",
        "connections",
        "date",
        "drained",
        "lifespan_state",
        "loop",
        "proxy",
        "root_path",
        "server_header",
        "settings",
        "state",
    )

    def __init__(
        self,
        app: ASGIApp,
        settings: HttpSettings,
        state: ServerState,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.app = app
        self.settings = settings
        self.state = state
        self.loop = loop
        self.connections: set[ConnectionLike] = set()
        self.date = DateCache()
        self.proxy = ProxyHeaders(settings.forwarded_allow_ips)
        self.root_path = settings.root_path
        self.server_header = (
            b"server: " + settings.server_header.encode("latin-1") + b"\r\n"
            if settings.server_header
            else b""
        )
        self.lifespan_state: dict[str, Any] = {}
        self.closing = False
        self.drained = asyncio.Event()  # set when closing and the last connection is gone
