"""A small Redis client: commands packed and replies parsed by hiredis, over asyncio or a socket.

Why not redis-py: `python -m benchmarks.queue_client` measured 194 us of client CPU per XADD
with its asyncio client and 62 us here one at a time, 62 and 9 us in pipelines of 10, because
redis-py wraps every command in a pool checkout, a retry object, a timeout scope and
Python-level packing. A queued job takes four or five commands on the consumer's side and two
or three on the waiting engine's: with redis-py that overhead was most of a job's cost.

What it does, and no more:

- `Client.execute` sends a command on one shared connection; concurrent callers are pipelined
  on it (Redis answers in order, so the waiting futures are a FIFO). `Client.pipeline` sends
  several commands in one write. Error replies are returned as `ReplyError` instances inside a
  pipeline's results and raised by `execute`.
- `Client.blocking` runs a blocking command (XREAD BLOCK, XREADGROUP BLOCK) on a connection of
  its own, kept in a free list for the next one.
- A command with no answer within `timeout` seconds (a hung Redis) aborts its connection: every
  caller on it gets `ConnectionError`, and the next command connects again.
- `SyncClient` is the same for a process without an event loop (the master's `status`).

URLs: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://`` (TLS) and
``unix://PATH[?db=DB]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

try:
    import hiredis
except ImportError as exc:  # the optional extra is missing
    raise ImportError("queue-fed groups need hiredis: pip install 'aioworker[queue]'") from exc

__all__ = ["Address", "Arg", "Client", "ReplyError", "SyncClient", "parse_url"]

Arg = bytes | str | int | float
Command = Sequence[Arg]


class ReplyError(Exception):
    """Redis answered a command with an error (``-ERR ...``, ``-NOSCRIPT ...``)."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where Redis is and how to log in, from its URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # a unix socket instead of host and port
    db: int = 0
    username: str = ""
    password: str = ""
    tls: bool = False

    def login(self) -> list[Command]:
        """The commands a new connection sends first."""
        commands: list[Command] = []
        if self.password:
            auth: list[Arg] = ["AUTH", self.password]
            if self.username:
                auth.insert(1, self.username)
            commands.append(auth)
        if self.db:
            commands.append(["SELECT", self.db])
        return commands


def parse_url(url: str) -> Address:
    """The Address in a redis://, rediss:// or unix:// URL; ValueError for anything else."""
    try:
        return _address(url)
    except ValueError as exc:  # a port or database that is not a number
        raise ValueError(f"{url!r}: {exc}") from None


def _address(url: str) -> Address:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    db_text = query.get("db", [""])[0]
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{url!r} names no socket path")
        return Address(
            path=unquote(parts.path),
            db=int(db_text or 0),
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r} is not redis://HOST:PORT/DB, rediss:// or unix://PATH")
    path_db = parts.path.strip("/")
    return Address(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(path_db or db_text or 0),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        tls=parts.scheme == "rediss",
    )


def _pack(commands: Sequence[Command]) -> bytes:
    # hiredis' stub types its argument as a 1-tuple; it takes any tuple of arguments.
    return b"".join([hiredis.pack_command(cast(Any, tuple(c))) for c in commands])


def _reader() -> hiredis.Reader:
    return hiredis.Reader(replyError=ReplyError)


class _Connection(asyncio.Protocol):
    """One connection: packed commands out, parsed replies to the waiting futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = _reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(ConnectionError(f"redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # an answer nobody asked for: the stream is out of step
                self.abort(ConnectionError("redis sent an unexpected reply"))
                return
            future = waiting.popleft()
            if not future.done():  # a cancelled caller's answer is dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:  # else abort() has said why
            self.lost = exc or ConnectionError("redis closed the connection")
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"redis connection lost: {self.lost}"))

    def abort(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails the waiting futures

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None

    def send(self, commands: Sequence[Command], timeout: float) -> list[asyncio.Future[Any]]:
        """Write the commands in one go; one future per reply. Past `timeout` seconds without
        the last reply, the connection is aborted."""
        if not self.usable:
            raise ConnectionError(f"redis connection lost: {self.lost}")
        assert self.transport is not None
        futures = [self.loop.create_future() for _ in commands]
        self.waiting.extend(futures)
        self.transport.write(_pack(commands))
        timer = self.loop.call_later(timeout, self._expire, futures[-1])
        futures[-1].add_done_callback(lambda _: timer.cancel())
        return futures

    def _expire(self, future: asyncio.Future[Any]) -> None:
        if not future.done():
            self.abort(ConnectionError("redis did not answer in time"))


async def _replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
    # Redis answers in order: once the last reply is in, so are the others (or the connection
    # was lost, and every future holds that error).
    try:
        await futures[-1]
    except BaseException:  # lost or cancelled: the other futures' outcome is this one's
        for future in futures[:-1]:
            if not future.done():
                future.cancel()  # its reply, if one comes, is dropped
            elif not future.cancelled():
                future.exception()  # retrieved: else asyncio logs it when it is collected
        raise
    return [future.result() for future in futures]


class Client:
    """Commands on one shared, pipelined connection; blocking commands on connections of their
    own. Connection failures surface as ConnectionError (OSError); the next call reconnects."""

    def __init__(self, url: str, *, timeout: float = 10.0, connect_timeout: float = 1.0) -> None:
        self.address = parse_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._shared: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._idle: list[_Connection] = []  # blocking connections, free
        self._busy: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        address = self.address
        context = ssl.create_default_context() if address.tls else None

        def factory() -> _Connection:
            return _Connection(loop)

        try:
            if address.path:
                made = loop.create_unix_connection(factory, address.path)
            else:
                made = loop.create_connection(
                    factory,
                    address.host,
                    address.port,
                    ssl=context,
                    server_hostname=address.host if context else None,
                )
            _, connection = await asyncio.wait_for(made, self.connect_timeout)
        except asyncio.TimeoutError as exc:
            raise ConnectionError(
                f"no connection to redis within {self.connect_timeout} s"
            ) from exc
        login = address.login()
        if login:
            for reply in await _replies(connection.send(login, self.timeout)):
                if isinstance(reply, ReplyError):
                    connection.abort(ConnectionError(str(reply)))
                    raise ConnectionError(f"redis refused the login: {reply}")
        return connection

    async def _shared_connection(self) -> _Connection:
        connection = self._shared
        if connection is not None and connection.usable:
            return connection
        if self._connecting is None:  # one connect for all the callers that find it missing
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            connection = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._shared = connection
        return connection

    async def execute(self, *args: Arg) -> Any:
        """One command's reply; ReplyError when Redis answers with an error."""
        connection = self._shared
        if connection is None or not connection.usable:
            connection = await self._shared_connection()
        (future,) = connection.send((args,), self.timeout)
        reply = await future
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of several commands sent in one write; errors as ReplyError values."""
        if not commands:
            return []
        connection = self._shared
        if connection is None or not connection.usable:
            connection = await self._shared_connection()
        return await _replies(connection.send(commands, self.timeout))

    async def blocking(self, *args: Arg, block: float, before: Sequence[Command] = ()) -> Any:
        """A command that may wait up to `block` seconds in Redis, on a connection of its own;
        `before` go ahead of it in the same write (their error replies raise ReplyError)."""
        connection = None
        while self._idle and connection is None:
            candidate = self._idle.pop()
            if candidate.usable:
                connection = candidate
        if connection is None:
            connection = await self._connect()
        self._busy.add(connection)
        finished = False
        try:
            futures = connection.send([*before, args], block + self.timeout)
            replies = await _replies(futures)
            finished = True
        finally:
            self._busy.discard(connection)
            if finished and connection.usable:
                self._idle.append(connection)
            else:  # cancelled or failed mid-command: its answer would come to the next user
                connection.abort(ConnectionError("abandoned"))
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies[-1]

    def drop(self) -> list[_Connection]:
        """Abort every connection (Redis was found unreachable): the next call connects anew."""
        dropped = [*self._idle, *self._busy, *([self._shared] if self._shared else [])]
        for connection in dropped:
            connection.abort(ConnectionError("dropped"))
        self._idle.clear()
        self._shared = None
        return dropped

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
            self._connecting = None
        closing = [c.closed for c in self.drop() if c.transport is not None]
        if closing:  # the sockets are closed on the loop's next turns
            await asyncio.wait(closing, timeout=1.0)


class SyncClient:
    """A blocking client for a process without an event loop: pipelines over one socket."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.address = parse_url(url)
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        address = self.address
        if address.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(address.path)
        else:
            sock = socket.create_connection((address.host, address.port), self.timeout)
        if address.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=address.host)
        sock.settimeout(self.timeout)
        self._sock = sock
        login = address.login()
        if login:
            for reply in self._exchange(sock, login):
                if isinstance(reply, ReplyError):
                    self.close()
                    raise ConnectionError(f"redis refused the login: {reply}")
        return sock

    def _exchange(self, sock: socket.socket, commands: Sequence[Command]) -> list[Any]:
        sock.sendall(_pack(commands))
        reader = _reader()
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("redis closed the connection")
                reader.feed(data)
                continue
            replies.append(reply)
        return replies

    def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The replies (errors as ReplyError values); OSError when Redis does not answer."""
        sock = self._sock or self._connect()
        try:
            return self._exchange(sock, commands)
        except (OSError, hiredis.ProtocolError) as exc:
            self.close()
            raise ConnectionError(str(exc)) from exc

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
