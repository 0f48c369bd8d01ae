"""A master started in the background (`aioworker start -d`), as production runs it.

The daemon is no child of the test: it is watched through /proc and its control socket, and
`daemon()` makes sure neither it nor a worker of it outlives the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioworker.supervisor import control
from tests.helpers.master import PYTHON, ROOT
from tests.helpers.wait import wait_until


def cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m aioworker ARGS` as a user runs it, to completion."""
    # As a user runs it: output to a pipe is block-buffered unless the program flushes it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(ROOT)  # where tests.apps.testapp is
    return subprocess.run(
        [PYTHON, "-m", "aioworker", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def alive(pid: int) -> bool:
    """Running (not a zombie waiting for a reaper that may never come in a container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The live children of `pid` (its workers, for a master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split() if alive(int(c))]


@dataclass
class Daemon:
    pid: int
    directory: Path
    socket: Path

    def command(self, name: str, **args: Any) -> dict[str, Any]:
        return control.request(self.socket, name, **args)

    def barrier(self) -> None:
        """Return once every signal sent before the call has been handled: a signal arrives
        before a later request, and is dispatched at the latest in the loop turn that answers
        that request; the second answer comes from a later turn."""
        self.command("status")
        self.command("status")

    def settled(self, group: str, count: int) -> bool:
        """Whether `group` runs `count` ready workers and no reload is under way."""
        for g in self.command("status")["groups"]:
            if g["name"] == group:
                return bool(g["ready"] == g["expected"] == count and g["state"] != "reloading")
        raise AssertionError(f"no group {group}")


@contextmanager
def daemon(directory: Path, socket: str = "aioworker.sock") -> Iterator[Daemon]:
    """`start -d` in `directory` (config.toml written by the caller); killed with its workers
    at the end if the test did not stop it."""
    started = cli("start", "-d", cwd=directory)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    workers: set[int] = set()
    try:
        workers.update(children(pid))
        yield Daemon(pid, directory, directory / socket)
    finally:
        workers.update(children(pid))
        for p in (pid, *workers):
            if alive(p):
                os.kill(p, signal.SIGKILL)
        wait_until(lambda: not any(alive(p) for p in (pid, *workers)), 10, "the daemon's end")
