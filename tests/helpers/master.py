"""Helpers for end-to-end master tests: start a real master in a subprocess, read its log.

The master logs `listening group=NAME url=http://127.0.0.1:PORT` once per group (so port 0 in
the config is fine), `ready group=NAME slot=N pid=P generation=G` per worker and `started` once
every group is up; tests wait for those lines, never for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.client import IncompleteResponse, NoResponse, request

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"  # apps the masters run, as tests.apps.NAME:app from ROOT
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable

FAST = """
graceful_timeout = {graceful}
keepalive_timeout = 1.0
header_timeout = 2.0
"""


def make_dir(world_readable: bool = False) -> Path:
    """A fresh working directory for a master (readable by every user when asked)."""
    base = tempfile.mkdtemp(prefix="aioworker-test-", dir="/tmp" if world_readable else None)
    path = Path(base)
    if world_readable:
        path.chmod(0o755)
    return path


def group_table(name: str, count: int, **keys: str) -> str:
    """A [groups.NAME] table serving the test app on a kernel-chosen port; `keys` are added as
    written (TOML values)."""
    lines = [
        f"[groups.{name}]",
        'app = "tests.apps.testapp:app"',
        'listen = "http://127.0.0.1:0"',
        f"count = {count}",
        *(f"{key} = {value}" for key, value in keys.items()),
    ]
    return "\n" + "\n".join(lines) + "\n"


def config_text(groups: str, *, graceful: float = 5.0, server: str = "") -> str:
    return "[server]\n" + FAST.format(graceful=graceful) + server + "\n" + textwrap.dedent(groups)


@dataclass
class MasterProcess:
    """A master running in a subprocess, with its merged stdout/stderr collected line by line."""

    proc: subprocess.Popen[str]
    directory: Path
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    ports: dict[str, int] = field(default_factory=dict)
    _pump_thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<EOF>")
            self.cond.notify_all()

    def wait_started(self) -> None:
        """Wait for `started`, then note each group's port from its `listening` line."""
        self.wait_for(r"started pid=")
        for m in self.all_matches(r"listening group=(\w+) url=http://[\d.]+:(\d+)"):
            self.ports[m.group(1)] = int(m.group(2))

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 20.0) -> re.Match[str]:
        """The first log line from index `since` on that matches `pattern` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = since
        with self.cond:
            while True:
                while index < len(self.lines):
                    found = regex.search(self.lines[index])
                    if found:
                        return found
                    if self.lines[index] == "<EOF>":
                        raise AssertionError(f"master exited before {pattern!r}:\n{self.log()}")
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} in:\n{self.log()}")
                self.cond.wait(left)

    def all_matches(self, pattern: str, since: int = 0) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self.cond:
            return [m for line in self.lines[since:] if (m := regex.search(line))]

    def log(self) -> str:
        with self.cond:
            return "\n".join(self.lines[-200:])

    def ready_pids(self, group: str, since: int = 0) -> dict[int, int]:
        """slot -> pid of the latest `ready` line per slot of `group`."""
        found = {}
        for m in self.all_matches(rf"ready group={group} slot=(\d+) pid=(\d+)", since):
            found[int(m.group(1))] = int(m.group(2))
        return found

    def url(self, group: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[group])

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._pump_thread.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def spawn(
    args: Sequence[str],
    directory: Path,
    env: dict[str, str] | None = None,
    *,
    new_session: bool = False,
) -> MasterProcess:
    """`python -m aioworker ARGS` in `directory`, its output collected."""
    return spawn_python(["-m", "aioworker", *args], directory, env, new_session=new_session)


def spawn_python(
    argv: Sequence[str],
    directory: Path,
    env: dict[str, str] | None = None,
    *,
    new_session: bool = False,
) -> MasterProcess:
    """`python ARGV` in `directory`: a script that starts a master itself.

    `directory` and ROOT are on PYTHONPATH: the first for code a test writes there, the second
    for the apps in tests/apps. `new_session`: the process leads a process group of its own
    (and its workers join it), so a test can signal the group as a terminal's Ctrl-C does.
    """
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)]),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [PYTHON, *argv],
        cwd=directory,
        env=full_env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=new_session,
    )
    return MasterProcess(proc, directory)


@contextmanager
def running_master(
    config: str,
    directory: Path | None = None,
    *,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    wait_started: bool = True,
) -> Iterator[MasterProcess]:
    """Write config.toml, run `aioworker start`, wait for `started`; stop it afterwards."""
    directory = directory or make_dir()
    (directory / "config.toml").write_text(config)
    master = spawn(["start", "-c", "config.toml", *extra], directory, env)
    try:
        if wait_started:
            master.wait_started()
        yield master
    finally:
        master.stop()


def get(address: tuple[str, int], path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a new connection (Connection: close); (status, body).

    A connection closed or reset before a whole response (a worker killed mid-request) raises
    ConnectionError, and silence past `timeout` TimeoutError: the errors a socket would raise,
    which the callers that expect a lost request catch.
    """
    raw = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    try:
        response = request(address, raw, timeout=timeout)
    except IncompleteResponse as exc:
        raise ConnectionError(str(exc)) from exc
    except NoResponse as exc:
        raise TimeoutError(str(exc)) from exc
    return response.status, response.body


class Load:
    """A client thread sending requests on new connections until stopped; counts outcomes."""

    def __init__(self, address: tuple[str, int], path: str = "/") -> None:
        self.address = address
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self.pids: list[int] = []
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import json

        while not self._stop.is_set():
            try:
                status, body = get(self.address, self.path)
                if status != 200:
                    raise ConnectionError(f"status {status}")
                pid = json.loads(body)["pid"]
            except Exception as exc:
                self.failures.append(repr(exc))
            else:
                with self._progress:
                    self.ok += 1
                    self.pids.append(pid)
                    self._progress.notify_all()

    def wait_ok(self, count: int, timeout: float = 20.0) -> None:
        """Wait until `count` more requests succeeded."""
        with self._progress:
            target = self.ok + count
            if not self._progress.wait_for(lambda: self.ok >= target, timeout):
                raise AssertionError(f"only {self.ok} ok, failures: {self.failures[:5]}")

    def pids_since(self, index: int) -> set[int]:
        return set(self.pids[index:])


def listening_inodes(pid: int) -> set[str]:
    """Socket inodes among a process's descriptors (to compare inherited listeners)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found
