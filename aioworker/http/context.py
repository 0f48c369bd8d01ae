"""What every connection of one server shares: the app, settings, counters and header bytes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aioworker._types import ASGIApp
from aioworker.config import HttpSettings
from aioworker.http.counters import ServerState
from aioworker.http.forwarded import ProxyHeaders
from aioworker.http.response import DateCache

if TYPE_CHECKING:
    from aioworker.http.connection import HttpProtocol

__all__ = ["ServerContext"]


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
        self.connections: set[HttpProtocol] = set()
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
