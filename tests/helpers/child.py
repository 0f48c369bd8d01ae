"""A test app in its own Python process that prints `READY PORT` once it listens."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_ready(
    module: str, *args: str, stderr: int | None = None
) -> tuple[subprocess.Popen[str], int]:
    """`python -m MODULE ARGS` from the repository root, after its first line `READY PORT`.

    Returns the process (stdout a text pipe, read past that line) and the port; a child that
    prints anything else first is killed and the test fails with that line.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    if ready[:1] != ["READY"]:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"{module} did not start: {ready}")
    return proc, int(ready[1])


def ready_socket() -> socket.socket:
    """In the child: a listening socket on a free port, announced as `READY PORT` on stdout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print("READY", sock.getsockname()[1], flush=True)
    return sock
