"""Processes: CPU pinning, free ports, readiness waits, process trees, RSS, clean stops."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

READY_TIMEOUT = 30.0


def cpu_split() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): disjoint when there are at least two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


def affinity(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn pinning the child (and everything it forks later) to `cpus`."""
    if not cpus:
        return None
    chosen = set(cpus)
    return lambda: os.sched_setaffinity(0, chosen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A benchmark's server presents a self-signed certificate made for the run (features.py).
_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def http_get(port: int, path: str = "/", timeout: float = 2.0, tls: bool = False) -> int:
    """Status code of one GET on a fresh connection (over TLS, the certificate unchecked, when
    `tls`); 0 when there is no HTTP answer."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as plain,
            _UNVERIFIED.wrap_socket(plain) if tls else plain as s,
        ):
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = s.recv(64)
    except OSError:  # ssl.SSLError is one
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _tcp_rows(port: int) -> list[list[str]]:
    """Rows of /proc/net/tcp{,6} whose local port is `port` (the server's side), split in fields:
    [3] state (01 = ESTABLISHED), [4] tx_queue:rx_queue in hex, [9] socket inode."""
    rows: list[list[str]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                rows.append(fields)
    return rows


def _established_inodes(port: int) -> list[str]:
    """Socket inodes of ESTABLISHED TCP connections whose local port is `port` (server side)."""
    return [fields[9] for fields in _tcp_rows(port) if fields[3] == "01"]


def established(port: int) -> int:
    return len(_established_inodes(port))


def server_end(port: int, client_port: int) -> tuple[int, int] | None:
    """(socket inode, unread bytes) of the server's end of the connection from `client_port`,
    None when there is none. The inode is 0 while the connection waits in the accept queue; once
    a process accepted it, unread bytes 0 means the server has read what the client sent."""
    for fields in _tcp_rows(port):
        if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == client_port:
            return int(fields[9]), int(fields[4].split(":")[1], 16)
    return None


def _fd_links(pid: int) -> list[str]:
    """What each open file descriptor of `pid` points to ("socket:[INODE]" for a socket)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    links: list[str] = []
    for fd in fds:
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return links


def holder(inode: int, pids: Sequence[int]) -> int:
    """Which of `pids` has socket `inode` open; 0 when none does."""
    wanted = f"socket:[{inode}]"
    return next((pid for pid in pids if wanted in _fd_links(pid)), 0)


def connections_held(pid: int, port: int) -> int:
    """How many of the established connections on `port` process `pid` has open."""
    wanted = {f"socket:[{inode}]" for inode in _established_inodes(port)}
    return sum(link in wanted for link in _fd_links(pid))


def stat_fields(stat: str) -> list[str]:
    """The fields of a /proc/PID/stat text after the command name: [0] is proc(5)'s field 3
    (state), [1] field 4 (ppid), [11] and [12] fields 14 and 15 (utime, stime). The command
    name may hold spaces and parentheses: the fields follow the last ')'."""
    return stat[stat.rindex(")") + 2 :].split()


def cpu_ticks(stat: str) -> int:
    """User plus system CPU time of one /proc/PID/stat text, in clock ticks (SC_CLK_TCK)."""
    fields = stat_fields(stat)
    return int(fields[11]) + int(fields[12])


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime) used so far by `pid` and every live descendant: a server's
    master and workers. A process that exits between two readings drops out of the sum, so
    compare readings taken while the server runs."""
    ticks = 0
    for each in (pid, *descendants(pid)):
        try:
            ticks += cpu_ticks(Path(f"/proc/{each}/stat").read_text())
        except OSError:  # gone since the listing
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat_fields(stat)[1])
    return parents


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    parents = _ppid_map()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = sorted(p for p, pp in parents.items() if pp == current)
        found += children
        frontier += children
    return found


def wchan(pid: int) -> str:
    """The kernel function `pid` waits in ("hrtimer_nanosleep", "do_epoll_wait"); "0" when it
    runs, "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return ""


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class Server:
    """A server under test in its own session, with stdout/stderr kept in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ports: Sequence[int],
        cpus: set[int] | None,
        *,
        cwd: str,
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        tls: bool = False,
    ) -> None:
        self.name = name
        self.ports = list(ports)
        self.ready_path = ready_path
        self.tls = tls  # its ports speak https
        self.killed = False  # set when stop() had to SIGKILL after SIGTERM timed out
        fd, self.log_path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=affinity(cpus),
        )
        os.close(fd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def wait_ready(self, workers: int = 0, timeout: float = READY_TIMEOUT) -> None:
        """Until every port answers 200 (and `workers` worker processes exist, when given)."""
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            pending = [p for p in pending if http_get(p, self.ready_path, tls=self.tls) != 200]
            if not pending and (not workers or len(self.workers()) >= workers):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)  # polling interval of a readiness probe, not a synchronisation sleep

    def workers(self) -> list[int]:
        """Worker pids: the descendants that serve (helpers like resource trackers excluded);
        the process itself when it forks none."""
        kids = [p for p in descendants(self.pid) if "resource_tracker" not in cmdline(p)]
        return kids or [self.pid]

    def cpu_seconds(self) -> float:
        """CPU time of the whole server (every process it started) so far."""
        return tree_cpu_seconds(self.pid)

    def worker_rss(self) -> list[float]:
        return [rss_mib(p) for p in self.workers()]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait for a clean exit; SIGKILL the whole session if it does not come."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        try:
            os.killpg(self.pid, signal.SIGKILL)  # stray workers whose master is gone
        except (ProcessLookupError, PermissionError):
            pass
        os.unlink(self.log_path)
        return self.proc.returncode
