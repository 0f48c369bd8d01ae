"""Listening sockets: the only module that creates, binds and sets options on listeners.

The master binds every listener before it forks and before any worker drops privileges, and
keeps them for its whole life. Each worker inherits its slot's socket across fork. Closing an
SO_REUSEPORT listener resets every connection still queued on it, so a socket the master keeps
hands its accept queue from a worker that exits to its successor.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import stat
import struct
import sys
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

from aioworker.config import GroupSettings, Listen

__all__ = [
    "BACKLOG",
    "BindError",
    "GroupSockets",
    "bind_group",
    "bind_listen",
    "close_all",
    "describe",
    "foreign_listeners",
    "probe_free",
    "selector_program",
]

# The kernel caps this at net.core.somaxconn (4096 on Linux >= 5.4); a long queue lets bursts
# wait for a busy or restarting worker instead of being refused.
BACKLOG = 2048


# Linux's reuseport selector: a classic BPF program attached to one socket of a SO_REUSEPORT
# group returns, for each new connection (at SYN time), the index of the socket in the group
# that gets it (sockets are indexed in the order they started listening); an index out of
# range falls back to the kernel's hash of the connection. Unprivileged, since Linux 4.5.
SO_ATTACH_REUSEPORT_CBPF = 51
_LD_ABS_W, _ALU_MOD_K, _JEQ_K, _RET_K, _RET_A = 0x20, 0x94, 0x15, 0x06, 0x16
_SKF_AD_RANDOM = 0xFFFFF000 + 56  # ancillary load: a fresh pseudo-random u32
_HASH = 0xFFFFFFFF  # no such index: the kernel hashes the connection as without a program

Instruction = tuple[int, int, int, int]  # struct sock_filter: code, jt, jf, k


class BindError(OSError):
    """A listener could not be bound; the message says where and why."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(slots=True)
class GroupSockets:
    """A group's listeners: one per slot with reuse_port, else one shared by every slot."""

    address: Listen
    reuse_port: bool
    sockets: list[socket.socket] = field(default_factory=list)
    steered: tuple[int, ...] | None = None  # the slots new connections go to (None: hashed)

    @property
    def port(self) -> int:
        """The bound TCP port (the kernel's choice when the config says port 0)."""
        if self.address.is_unix or not self.sockets:
            return self.address.port
        return int(self.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The address as a URL, with the real port."""
        if self.address.is_unix:
            return f"unix:{self.address.path}"
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"{'https' if self.address.tls else 'http'}://{host}:{self.port}"

    def for_slot(self, slot: int) -> socket.socket:
        """The socket the worker of `slot` accepts on; binds more when the group grew."""
        if not self.reuse_port:
            return self.sockets[0]
        while len(self.sockets) <= slot:
            self.sockets.append(_bind_tcp(self.address.host, self.port, reuse_port=True))
        return self.sockets[slot]

    def shrink(self, count: int, held: Set[int] = frozenset()) -> None:
        """Close the per-slot sockets beyond `count`, from the top, stopping at the first one
        whose slot is still `held` by a worker (queued connections of a closed one are reset)."""
        if not self.reuse_port:
            return
        while len(self.sockets) > max(count, 1) and len(self.sockets) - 1 not in held:
            self.sockets.pop().close()

    def steer(self, slots: Sequence[int]) -> bool:
        """Send new connections only to the sockets of `slots` (each with equal chance); an
        empty `slots` lets the kernel hash them over every socket. False when the group has
        no per-slot sockets or the kernel refused the program (the hash then still applies)."""
        wanted = tuple(slots)
        if not self.reuse_port or not self.sockets:
            return False
        if wanted == self.steered:
            return True
        try:
            _attach(self.sockets[0], selector_program(wanted))
        except OSError:
            return False
        self.steered = wanted
        return True

    def take_queued(self, slot: int, limit: int = 256) -> list[socket.socket]:
        """Accept, on the master's copy of `slot`'s listener, connections queued there (at
        most `limit`, never blocking): for a slot whose worker cannot accept them."""
        if not self.reuse_port or slot >= len(self.sockets):
            return []
        listener = self.sockets[slot]
        listener.setblocking(False)  # shared with the workers' copies, which are non-blocking
        taken: list[socket.socket] = []
        while len(taken) < limit:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ECONNABORTED for one, EMFILE for the master: try again later
                break
            taken.append(connection)
        return taken

    def fds(self) -> set[int]:
        return {s.fileno() for s in self.sockets if s.fileno() >= 0}

    def close(self) -> None:
        close_all(self.sockets)
        self.sockets.clear()
        if self.address.is_unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address.path)


def bind_group(group: GroupSettings, count: int | None = None) -> GroupSockets:
    """Bind a group's listeners: `count` SO_REUSEPORT sockets, or one shared socket."""
    address = group.address
    if address is None:
        raise ValueError(f"group {group.name} has no listen address")
    count = group.workers if count is None else count
    reuse = group.reuse_port and not address.is_unix and hasattr(socket, "SO_REUSEPORT")
    result = GroupSockets(address=address, reuse_port=reuse)
    try:
        first = bind_listen(address, reuse_port=reuse)
        result.sockets.append(first)
        if reuse:
            result.for_slot(count - 1)
            # probe_free cannot see a second copy that bound between its probe and our bind
            # (both probes pass, both binds join one SO_REUSEPORT group): look once more.
            if address.port and foreign_listeners(result.port, result.sockets):
                raise BindError(
                    errno.EADDRINUSE, f"{result.url}: address already in use by another process"
                )
    except BaseException:
        result.close()
        raise
    return result


def selector_program(slots: Sequence[int]) -> list[Instruction]:
    """The reuseport selector that spreads new connections evenly over `slots` (socket
    indexes in the group); for no slots, one that leaves the choice to the kernel's hash."""
    if not slots:
        return [(_RET_K, 0, 0, _HASH)]
    if len(slots) == 1:
        return [(_RET_K, 0, 0, slots[0])]
    program = [(_LD_ABS_W, 0, 0, _SKF_AD_RANDOM), (_ALU_MOD_K, 0, 0, len(slots))]
    if list(slots) == list(range(len(slots))):
        return [*program, (_RET_A, 0, 0, 0)]  # A is already the index
    for position, slot in enumerate(slots[:-1]):
        program += [(_JEQ_K, 0, 1, position), (_RET_K, 0, 0, slot)]
    return [*program, (_RET_K, 0, 0, slots[-1])]


class _Program(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))  # struct sock_fprog


def _attach(sock: socket.socket, program: list[Instruction]) -> None:
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _Program(len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


def foreign_listeners(port: int, ours: list[socket.socket]) -> list[int]:
    """Inodes of TCP listeners that are not among `ours` and would share their connections:
    same port, and the same address or a wildcard on either side (Linux; [] elsewhere)."""
    mine = {os.fstat(sock.fileno()).st_ino for sock in ours}
    here = ipaddress.ip_address(ours[0].getsockname()[0])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as stream:
                rows = stream.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, _, port_hex = fields[1].partition(":")
            inode = int(fields[9])
            if fields[3] != "0A" or int(port_hex, 16) != port or inode in mine:
                continue  # 0A is TCP_LISTEN
            there = _proc_address(address)
            if there == here or there.is_unspecified or here.is_unspecified:
                found.append(inode)
    return found


def _proc_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address as /proc/net/tcp{,6} prints it: hex 32-bit words in host byte order."""
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def bind_listen(address: Listen, *, reuse_port: bool = False) -> socket.socket:
    """Bind and listen on one address, refusing one another process already holds."""
    if address.is_unix:
        return _bind_unix(address.path)
    if address.port:
        # SO_REUSEPORT would let us share a port another copy of the server holds (same
        # user), silently splitting its traffic; a plain bind fails on any holder.
        probe_free(address.host, address.port)
    return _bind_tcp(address.host, address.port, reuse_port=reuse_port)


def probe_free(host: str, port: int) -> None:
    """Raise BindError when `host:port` is already bound by anyone."""
    family = _family(host)
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only ignores TIME_WAIT leftovers; a listener still makes bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(_sockaddr(host, port, family))
    except OSError as exc:
        raise _bind_error(host, port, exc) from None
    finally:
        probe.close()


def _bind_tcp(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(_sockaddr(host, port, family))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    sock.set_inheritable(False)
    return sock


def _bind_unix(path: str) -> socket.socket:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise BindError(errno.EEXIST, f"unix:{path}: exists and is not a socket")
        if _unix_in_use(path):
            raise BindError(errno.EADDRINUSE, f"unix:{path}: already in use {_holder(path)}")
        os.unlink(path)  # stale file left by a process that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # The front proxy runs as another user; the listener is as open as a TCP port.
        os.chmod(path, 0o666)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"unix:{path}: cannot listen: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def _unix_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _holder(where: int | str) -> str:
    """Who holds a TCP port or a unix socket path, as the end of an "in use" message: this
    very process (a server of this program still open: the embedding case), or another one."""
    try:
        mine = {
            int(link[8:-1])
            for fd in os.listdir("/proc/self/fd")
            if (link := _readlink(f"/proc/self/fd/{fd}")).startswith("socket:[")
        }
    except OSError:  # no /proc here: cannot tell
        return "by another process"
    tables: tuple[str, ...] = ("/proc/net/unix",)
    if isinstance(where, int):
        tables, match = ("/proc/net/tcp", "/proc/net/tcp6"), _listens_on_port(where)
    else:
        match = _bound_to_path(where)
    for table in tables:
        try:
            with open(table) as stream:
                rows = stream.read().splitlines()[1:]
        except OSError:
            continue
        if any(inode in mine for inode in map(match, rows) if inode):
            return "by this process (a listener it opened earlier is still open)"
    return "by another process"


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed since listdir
        return ""


def _listens_on_port(port: int) -> Callable[[str], int]:
    """A /proc/net/tcp row -> the inode of a listener on `port`, else 0."""

    def match(row: str) -> int:
        fields = row.split()
        listening = fields[3] == "0A" and int(fields[1].partition(":")[2], 16) == port
        return int(fields[9]) if listening else 0

    return match


def _bound_to_path(path: str) -> Callable[[str], int]:
    """A /proc/net/unix row -> the inode of the socket bound to `path`, else 0."""

    def match(row: str) -> int:
        fields = row.split()
        return int(fields[6]) if len(fields) > 7 and fields[7] == path else 0

    return match


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _sockaddr(host: str, port: int, family: socket.AddressFamily) -> tuple[str, int]:
    if family == socket.AF_INET6 or host in ("", "0.0.0.0"):
        return (host, port)
    # Resolve names such as "localhost" once, to an IPv4 address.
    return (socket.gethostbyname(host), port)


def _bind_error(host: str, port: int, exc: OSError) -> BindError:
    where = f"http://{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return BindError(exc.errno, f"{where}: address already in use {_holder(port)}")
    if exc.errno == errno.EACCES:
        return BindError(exc.errno, f"{where}: permission denied (ports below 1024 need root)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindError(exc.errno, f"{where}: address not available on this machine")
    return BindError(exc.errno, f"{where}: cannot listen: {exc.strerror or exc}")


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def describe(sock: socket.socket) -> str:
    """A listener as a URL, for logs."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host = f"[{name[0]}]" if sock.family == socket.AF_INET6 else name[0]
    return f"http://{host}:{name[1]}"
