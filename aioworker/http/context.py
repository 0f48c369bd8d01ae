"""What every connection of one server shares: the app, settings, counters and header bytes."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aioworker._types import ASGIApp
from aioworker.config import HttpSettings
from aioworker.http.access import AccessLog
from aioworker.http.counters import ServerState
from aioworker.http.forwarded import ProxyHeaders
from aioworker.http.response import DateCache

__all__ = ["ConnectionLike", "CycleLike", "HeldHead", "ServerContext"]


class CycleLike(Protocol):
    """What the server needs of a connection's request in progress."""

    @property
    def task(self) -> asyncio.Task[None] | None: ...


class ConnectionLike(Protocol):
    """What the server does with an open connection (`connection.HttpProtocol`), declared
    here so that this module, which the connection imports, needs no import of it."""

    @property
    def cycle(self) -> CycleLike | None: ...

    @property
    def evictable(self) -> bool:
        """Nothing to lose by closing it: idle, or a request head still incomplete."""

    def evict(self) -> None: ...

    def check_timeouts(self, now: float) -> None: ...

    def shutdown(self) -> None: ...

    def force_close(self) -> None: ...


class HeldHead(Protocol):
    """A response whose head is held back until its first body (framing.Response)."""

    head: bytes  # b"" once the head has left

    def flush_head(self) -> None: ...


class ServerContext:
    """Built once by server.Server; each connection and request cycle reads it."""

    __slots__ = (
        "access",
        "app",
        "clients",
        "closing",
        "connections",
        "date",
        "drained",
        "held",
        "lifespan_state",
        "loop",
        "proxy",
        "root_path",
        "server_header",
        "settings",
        "state",
    )

    def make_room(self) -> bool:
        """At max_connections: evict the oldest connection that is idle or still sending its
        request head (silent clients must not lock new ones out); False if none is."""
        for conn in self.connections:
            if conn.evictable:
                conn.evict()
                return True
        return False

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
        # Open connections, oldest first (a dict keeps insertion order): the oldest evictable
        # one makes room for a new connection at max_connections.
        self.connections: dict[ConnectionLike, None] = {}
        self.clients: dict[str, int] = {}  # open connections per client address
        self.proxy = ProxyHeaders(settings.forwarded_allow_ips)
        self.root_path = settings.root_path
        self.server_header = (
            b"server: " + settings.server_header.encode("latin-1") + b"\r\n"
            if settings.server_header
            else b""
        )
        self.date = DateCache(self.server_header)
        # None when access_log is off: a request then costs one attribute test for it.
        self.access = AccessLog(settings.access_log_format, loop) if settings.access_log else None
        self.lifespan_state: dict[str, Any] = {}
        self.closing = False
        self.held: list[HeldHead] = []  # responses whose head waits for its first body
        self.drained = asyncio.Event()  # set when closing and the last connection is gone

    def hold(self, response: HeldHead) -> None:
        """Flush `response`'s head at the next loop turn unless a body took it along.

        One call_soon per loop turn instead of one per response: 101,933 -> 100,893
        instructions per hello-world request on uvloop (callgrind, 16 connections).
        framing.Response._start does the same inline."""
        held = self.held
        if not held:
            self.loop.call_soon(self.flush_held)
        held.append(response)

    def flush_held(self) -> None:
        held = self.held
        self.held = []
        for response in held:
            if response.head:  # b"" for the ones a body already took along: no call for them
                response.flush_head()
