"""Ctrl-C: the first SIGINT stops as TERM does (requests finish, lifespan shutdown runs), the
second stops at once; for `start`, `serve` and the embedded `run_app`.

A terminal's Ctrl-C reaches the whole foreground process group, the master and its workers at
once: the master runs in a session of its own here and the tests signal the group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.child import start_ready
from tests.helpers.master import MasterProcess, config_text, get, make_dir, spawn

GATED = """
[groups.web]
app = "tests.apps.gated:app"
listen = "http://127.0.0.1:0"
count = 2
"""


def _start(directory: Path, gate: Path) -> MasterProcess:
    (directory / "config.toml").write_text(config_text(GATED, graceful=30.0))
    return spawn(["start", "-c", "config.toml"], directory, {"GATE": str(gate)}, new_session=True)


def _serve(directory: Path, gate: Path) -> MasterProcess:
    args = ["serve", "tests.apps.gated:app", "--listen", "http://127.0.0.1:0", "--count", "2"]
    args += ["--graceful-timeout", "30"]
    return spawn(args, directory, {"GATE": str(gate)}, new_session=True)


@contextmanager
def _master(how: str) -> Iterator[tuple[MasterProcess, Path]]:
    directory = make_dir()
    gate = directory / "gate"
    os.mkfifo(gate)
    master = (_start if how == "start" else _serve)(directory, gate)
    try:
        master.wait_started()
        yield master, gate
    finally:
        if master.proc.poll() is None:
            os.killpg(master.proc.pid, signal.SIGKILL)
        master.stop()


class InFlight:
    """`GET /gate` in a thread; `outcome` holds (status, body) or the error."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(address,), daemon=True)
        self.thread.start()

    def _run(self, address: tuple[str, int]) -> None:
        try:
            self.outcome.append(get(address, "/gate", timeout=30.0))
        except OSError as exc:
            self.outcome.append(exc)

    def result(self) -> object:
        self.thread.join(30)
        return self.outcome[0]


def _open(gate: Path, line: bytes) -> None:
    fd = os.open(gate, os.O_WRONLY)  # the worker holds the reading end open
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _ctrl_c_during_request(master: MasterProcess) -> tuple[InFlight, int]:
    """A request waiting at the gate, then Ctrl-C: the request and the log mark before it."""
    request = InFlight(master.url("web"))
    master.wait_for(r"GATE WAITING")
    since = master.mark()
    os.killpg(master.proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process
    master.wait_for(r"graceful stop", since)
    return request, since


@pytest.mark.parametrize("how", ["start", "serve"])
def test_ctrl_c_lets_requests_in_progress_finish(how: str) -> None:
    with _master(how) as (master, gate):
        request, since = _ctrl_c_during_request(master)
        _open(gate, b"finished\n")
        assert request.result() == (200, b"finished")
        assert master.wait(30) == 0
        # Both workers ran lifespan shutdown: Ctrl-C did not kill the idle one either.
        assert len(master.all_matches(r"LIFESPAN SHUTDOWN", since)) == 2
        assert master.all_matches(r"worker died", since) == []


@pytest.mark.parametrize("how", ["start", "serve"])
def test_second_ctrl_c_stops_at_once(how: str) -> None:
    with _master(how) as (master, _gate):
        request, since = _ctrl_c_during_request(master)
        started = time.monotonic()
        os.killpg(master.proc.pid, signal.SIGINT)
        master.wait_for(r"fast stop", since)
        assert master.wait(10) == 0
        # graceful_timeout is 30 s: the second Ctrl-C did not wait for it.
        assert time.monotonic() - started < 8
        assert isinstance(request.result(), OSError)


def test_quit_stops_at_once() -> None:
    with _master("start") as (master, _gate):
        request = InFlight(master.url("web"))
        master.wait_for(r"GATE WAITING")
        since = master.mark()
        master.signal(signal.SIGQUIT)
        master.wait_for(r"fast stop", since)
        assert master.wait(10) == 0
        assert isinstance(request.result(), OSError)


@contextmanager
def _embedded() -> Iterator[tuple[subprocess.Popen[str], InFlight, Path]]:
    directory = make_dir()
    gate = directory / "gate"
    os.mkfifo(gate)
    os.environ["GATE"] = str(gate)  # start_ready's child inherits it
    try:
        proc, port = start_ready("tests.apps.gated", stderr=subprocess.PIPE)
    finally:
        del os.environ["GATE"]
    try:
        # A request waiting at the gate, then Ctrl-C.
        request = InFlight(("127.0.0.1", port))
        _read_until(proc, "GATE WAITING")
        proc.send_signal(signal.SIGINT)
        _read_until(proc, "SIGINT: stopping gracefully")
        yield proc, request, gate
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _read_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in:\n" + "\n".join(lines))


def test_run_app_ctrl_c_lets_requests_finish() -> None:
    with _embedded() as (proc, request, gate):
        _open(gate, b"finished\n")
        assert request.result() == (200, b"finished")
        rest = _read_until(proc, "EXITED")
        assert proc.wait(10) == 0
        assert any("LIFESPAN SHUTDOWN" in line for line in rest), rest
        assert any("aioworker.server: stopped" in line for line in rest), rest


def test_run_app_second_ctrl_c_stops_at_once() -> None:
    with _embedded() as (proc, request, _gate):
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = _read_until(proc, "EXITED")
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 8  # not graceful_timeout (30 s)
        assert any("SIGINT again: stopping at once" in line for line in rest), rest
        assert isinstance(request.result(), OSError)
