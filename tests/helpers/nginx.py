"""Run a real nginx in the foreground on a loopback port, from a generated nginx.conf."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.wait import wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx_prefix() -> Iterator[Path]:
    """A prefix directory nginx's workers can enter: as root they run as nobody."""
    path = Path(tempfile.mkdtemp(prefix="aioworker-nginx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a config, with its prefix the config's directory."""
    prefix = conf.parent
    return subprocess.run(
        [NGINX, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:port accepts a connection; fail if the process exits first."""

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(listening, timeout, f"a listener on 127.0.0.1:{port}", interval=0.02)


@contextlib.contextmanager
def running_nginx(conf_text: str, prefix: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start nginx (master in the foreground, owned by the test) and stop it at the end."""
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    process = subprocess.Popen(
        [NGINX, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_for_port(port, process)
        except (RuntimeError, AssertionError) as exc:
            process.kill()
            _, err = process.communicate(timeout=10)
            log = prefix / "error.log"
            raise RuntimeError(
                f"nginx did not start: {exc}\n{err.decode()}\n"
                + (log.read_text() if log.exists() else "")
            ) from None
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
