"""One request per connection, non-blocking, on the master's selector: control and metrics.

The master has no event loop: it calls ``key.data()`` for each ready key of its selector. This
server registers its listening socket and each connection with a zero-argument callback that
tries a non-blocking accept, recv or send and never waits. A connection reads one request
(until ``complete(buffer)`` or ``max_request`` bytes), gets ``respond(buffer)``, writes it (on
EVENT_WRITE when the client reads slowly) and closes. Each connection has a deadline that
``tick()`` enforces and the number of connections is capped, so a slow, silent or hostile
client costs the master one descriptor for at most ``timeout`` seconds and never blocks it.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable

__all__ = ["OneShotServer", "OneShotService"]

log = logging.getLogger("aioworker.master")


class _Connection:
    __slots__ = ("deadline", "inbox", "lingering", "outbox", "sock", "writing")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = b""
        self.outbox = b""
        self.writing = False
        self.lingering = False


class OneShotServer:
    """Serve `respond(request) -> response` on a listening socket from a selector loop."""

    def __init__(
        self,
        sock: socket.socket,
        respond: Callable[[bytes], bytes],
        complete: Callable[[bytes], bool],
        *,
        max_request: int = 65536,
        timeout: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._respond = respond
        self._complete = complete
        self.max_request = max_request
        self.timeout = timeout
        self.max_connections = max_connections
        self.connections: dict[int, _Connection] = {}
        self._selector: selectors.BaseSelector | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Register with `selector`; its loop must call ``key.data()`` for ready keys."""
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def tick(self, now: float | None = None) -> None:
        """Close connections past their deadline; call at least once a second."""
        now = time.monotonic() if now is None else now
        for conn in [c for c in self.connections.values() if now >= c.deadline]:
            self._close(conn)

    def close(self) -> None:
        """Close every connection and the listening socket."""
        for conn in list(self.connections.values()):
            self._close(conn)
        if self._selector is not None:
            try:
                self._selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self.sock.close()

    def _accept(self) -> None:
        # Bounded, so a connection flood cannot keep the master in here.
        for _ in range(64):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next event
                log.warning("cannot accept on %s: %s", self.sock.getsockname(), exc)
                return
            if len(self.connections) >= self.max_connections:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + self.timeout)
            self.connections[sock.fileno()] = conn
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, lambda c=conn: self._event(c))

    def _event(self, conn: _Connection) -> None:
        if conn.writing:
            self._send(conn)
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.lingering:
            return  # discard what the client still sends until it closes or the deadline
        conn.inbox += data
        if not self._complete(conn.inbox) and len(conn.inbox) < self.max_request:
            return
        try:
            conn.outbox = self._respond(conn.inbox[: self.max_request])
        except Exception:
            log.exception("failed to answer a request on %s", self.sock.getsockname())
            self._close(conn)
            return
        conn.writing = True
        self._send(conn)

    def _send(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.outbox = conn.outbox[sent:]
        assert self._selector is not None
        key = self._selector.get_key(conn.sock)
        if conn.outbox:
            if key.events != selectors.EVENT_WRITE:
                self._selector.modify(conn.sock, selectors.EVENT_WRITE, key.data)
            return
        # Closing with unread input would reset the connection and could destroy the reply
        # in flight: half-close, then read and discard until the client closes (or deadline).
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.writing = False
        conn.lingering = True
        if key.events != selectors.EVENT_READ:
            self._selector.modify(conn.sock, selectors.EVENT_READ, key.data)

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        self.connections.pop(fd, None)
        if self._selector is not None and fd >= 0:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.sock.close()


class OneShotService:
    """A service the master answers with a `OneShotServer` (its control socket, its metrics):
    registered with the master's selector, ticked for timeouts, closed."""

    server: OneShotServer

    def fileno(self) -> int:
        return self.server.fileno()

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Register with the master's selector (callbacks are called as ``key.data()``)."""
        self.server.attach(selector)

    def tick(self, now: float | None = None) -> None:
        self.server.tick(now)

    def close(self) -> None:
        self.server.close()
