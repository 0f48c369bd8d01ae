"""A port another process holds: the listener that a second copy of the server would meet."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def other_listener() -> Iterator[socket.socket]:
    """A socket listening on a free port of 127.0.0.1, closed on exit.

    It sets SO_REUSEPORT as a second copy of the server would, so a bind that only relied on
    the kernel refusing the port would succeed next to it.
    """
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now, for a server that cannot bind port 0 and report
    it (redis-server). Another process could take it before it is used; that fails loudly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
