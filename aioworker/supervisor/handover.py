"""Moving accepted connections between processes: the master hands a worker client sockets.

When a slot stops taking new connections (its worker's loop is blocked, frozen, or the slot is
empty while its worker restarts), connections the kernel had already queued on that slot's
listener would wait there. The master owns a copy of every listener, so it accepts them itself
and passes each one, as a file descriptor (SCM_RIGHTS), to a worker of the same group that is
turning; that worker serves it like one it accepted.

Each worker of a per-slot group gets one end of a SOCK_SEQPACKET pair at fork: one message per
batch, so message boundaries need no framing, and the master never blocks on a full channel.
"""

from __future__ import annotations

import array
import contextlib
import socket
from collections.abc import Sequence

__all__ = ["MAX_BATCH", "channel", "receive", "send"]

MAX_BATCH = 32  # descriptors per message (SCM_MAX_FD is 253)
_FD_SIZE = array.array("i").itemsize


def channel() -> tuple[socket.socket, socket.socket]:
    """(master's end, worker's end); the master's end never blocks."""
    master, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master.setblocking(False)
    return master, worker


def send(end: socket.socket, connections: Sequence[socket.socket]) -> int:
    """Pass `connections` to the worker on the other end; how many it now holds. The caller
    closes its copies either way (a connection that could not be passed is reset)."""
    sent = 0
    for start in range(0, len(connections), MAX_BATCH):
        batch = connections[start : start + MAX_BATCH]
        fds = array.array("i", [c.fileno() for c in batch])
        try:
            end.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError:  # the worker is gone, or its channel is full
            break
        sent += len(batch)
    return sent


def receive(end: socket.socket) -> list[socket.socket]:
    """In the worker: every connection waiting on the channel (non-blocking)."""
    received: list[socket.socket] = []
    while True:
        try:
            _, ancillary, _, _ = end.recvmsg(1, socket.CMSG_SPACE(MAX_BATCH * _FD_SIZE))
        except (BlockingIOError, InterruptedError):
            return received
        except OSError:
            return received
        if not ancillary:
            return received  # the master closed its end
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
                for fd in fds:
                    with contextlib.suppress(OSError):
                        received.append(socket.socket(fileno=fd))
