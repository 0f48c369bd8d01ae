"""Control socket: a real unix socket served from a selector loop like the master's."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioworker.config import Config, ServerSettings
from aioworker.supervisor.control import (
    CommandError,
    ControlError,
    ControlServer,
    NoMaster,
    query,
    request,
)
from tests.helpers.client import exchange
from tests.helpers.selectloop import SelectLoop


@pytest.fixture
def calls() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def control(
    tmp_path: Path, calls: list[tuple[str, dict[str, Any]]], request: pytest.FixtureRequest
) -> Iterator[tuple[ControlServer, SelectLoop]]:
    def status(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(("status", args))
        if args.get("big"):
            return {"blob": "x" * 3_000_000}
        return {"pid": 123, "groups": []}

    def reload(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(("reload", args))
        groups = args.get("groups") or ["web", "task"]
        if "nope" in groups:
            raise CommandError("no group named nope")
        return {"groups": groups}

    def stop(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(("stop", args))
        return {"fast": bool(args.get("fast"))}

    def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    server = ControlServer(
        tmp_path / "aioworker.sock",
        {"status": status, "reload": reload, "stop": stop, "broken": broken},
        timeout=getattr(request, "param", 0.5),  # seconds a client may take
    )
    loop = SelectLoop()
    server.attach(loop.selector)
    loop.ticks.append(server.tick)
    loop.start()
    yield server, loop
    loop.stop()
    server.close()


def test_socket_is_private(control: tuple[ControlServer, SelectLoop]) -> None:
    server, _ = control
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_commands_round_trip(
    control: tuple[ControlServer, SelectLoop], calls: list[tuple[str, dict[str, Any]]]
) -> None:
    server, _ = control
    assert request(server.path, "status") == {"ok": True, "pid": 123, "groups": []}
    assert request(server.path, "reload", groups=["task"]) == {"ok": True, "groups": ["task"]}
    assert request(server.path, "stop", fast=True) == {"ok": True, "fast": True}
    assert calls == [("status", {}), ("reload", {"groups": ["task"]}), ("stop", {"fast": True})]


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        pytest.param(
            "frobnicate", {}, "unknown command 'frobnicate'; known: broken, reload", id="unknown"
        ),
        pytest.param("reload", {"groups": ["nope"]}, "no group named nope", id="refused"),
        pytest.param("broken", {}, "broken failed in the master: boom", id="handler-crash"),
    ],
)
def test_refused_commands(
    control: tuple[ControlServer, SelectLoop], command: str, args: dict[str, Any], message: str
) -> None:
    server, _ = control
    with pytest.raises(ControlError, match=re.escape(message)) as info:
        request(server.path, command, **args)
    assert not isinstance(info.value, NoMaster)
    # The master goes on answering.
    assert request(server.path, "status")["ok"] is True


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        pytest.param(b"not json\n", "expected one JSON object on one line", id="not-json"),
        pytest.param(b"[1, 2]\n", 'expected {"command"', id="not-object"),
        pytest.param(b'{"cmd": "status"}\n', 'expected {"command"', id="no-command"),
        pytest.param(b"\xff\xfe\n", "expected one JSON object", id="not-utf8"),
        pytest.param(b"{" + b" " * 70_000, "expected one JSON object", id="too-long"),
    ],
)
def test_bad_requests(
    control: tuple[ControlServer, SelectLoop], payload: bytes, error: str
) -> None:
    server, _ = control
    reply = json.loads(exchange(str(server.path), payload))
    assert reply["ok"] is False
    assert error in reply["error"]


def test_no_master(tmp_path: Path) -> None:
    with pytest.raises(NoMaster, match=re.escape("no master is running (no control socket")):
        request(tmp_path / "missing.sock", "status")
    # A socket file left behind by a master that died.
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(stale))
    sock.close()
    with pytest.raises(NoMaster, match="stale control socket"):
        request(stale, "status")
    # A new master takes the stale path over.
    server = ControlServer(stale, {"status": lambda args: {"fresh": True}})
    loop = SelectLoop()
    server.attach(loop.selector)
    loop.start()
    try:
        assert request(stale, "status")["fresh"] is True
    finally:
        loop.stop()
        server.close()
    assert not stale.exists()


def test_second_master_refused(control: tuple[ControlServer, SelectLoop]) -> None:
    server, _ = control
    with pytest.raises(ControlError, match="another master answers on"):
        ControlServer(server.path, {})
    assert request(server.path, "status")["ok"] is True


def test_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(ControlError, match="is not a socket"):
        ControlServer(path, {})
    assert path.read_text() == "keep me"


def test_path_too_long(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120)
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        ControlServer(path, {})
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        request(path, "status")


def test_permission_denied(control: tuple[ControlServer, SelectLoop]) -> None:
    server, _ = control
    if os.getuid() != 0:
        os.chmod(server.path, 0)  # the owner itself is refused
        with pytest.raises(ControlError, match="permission denied"):
            request(server.path, "status")
        return
    # As root: another user is refused by the socket's 0600 mode.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                request(server.path, "status")
            except ControlError as exc:
                os.write(write_fd, str(exc).encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    message = os.read(read_fd, 4096).decode()
    os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "permission denied on control socket" in message


@pytest.mark.parametrize("control", [1.5], indirect=True)
def test_silent_client_neither_blocks_nor_lingers(
    control: tuple[ControlServer, SelectLoop],
) -> None:
    server, _ = control
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(server.path))
    partial = socket.socket(socket.AF_UNIX)
    partial.connect(str(server.path))
    partial.sendall(b'{"command": "sta')
    # Others are answered while those two hang on (well before their 1.5 s deadline).
    started = time.monotonic()
    assert request(server.path, "status")["ok"] is True
    assert time.monotonic() - started < 1.0
    # Past the deadline both are closed: recv sees EOF.
    for sock in (silent, partial):
        sock.settimeout(5)
        assert sock.recv(10) == b""
        sock.close()
    assert server.server.connections == {}


def test_slow_reader_gets_a_large_reply(control: tuple[ControlServer, SelectLoop]) -> None:
    server, _ = control
    with socket.socket(socket.AF_UNIX) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(str(server.path))
        sock.sendall(b'{"command": "status", "big": true}\n')
        # While this client has not read anything, the loop still serves others.
        assert request(server.path, "status")["ok"] is True
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert len(json.loads(data)["blob"]) == 3_000_000


def test_close_removes_socket(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    server = ControlServer(path, {})
    assert path.exists()
    server.close()
    assert not path.exists()
    with pytest.raises(NoMaster):
        request(path, "status")


def test_timeout_when_master_hangs(tmp_path: Path) -> None:
    """A master that accepts but never answers (its loop is stuck): the client gives up."""
    path = tmp_path / "hung.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(1)
    try:
        with pytest.raises(ControlError, match=re.escape("did not answer within 0.3 s")):
            request(path, "status", timeout=0.3)
    finally:
        sock.close()


def test_sigpipe_safe_when_client_leaves(control: tuple[ControlServer, SelectLoop]) -> None:
    """A client that disconnects before the big reply is written does not hurt the master."""
    server, _ = control
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's default
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.path))
        sock.sendall(b'{"command": "status", "big": true}\n')
    assert request(server.path, "status")["ok"] is True


def test_query_for_the_cli(control: tuple[ControlServer, SelectLoop], tmp_path: Path) -> None:
    server, _ = control
    config = Config(
        server=ServerSettings(control_socket="aioworker.sock"), path=tmp_path / "c.toml"
    )
    assert config.control_path == server.path
    assert query(config, "status") == {"pid": 123, "groups": []}
    with pytest.raises(ControlError, match="no group named nope"):
        query(config, "reload", groups=["nope"])
    # No master there, or no control socket configured: None, so the CLI uses signals.
    elsewhere = Config(server=ServerSettings(control_socket="none.sock"), path=tmp_path / "c.toml")
    assert query(elsewhere, "status") is None
    off = Config(server=ServerSettings(control_socket=""), path=tmp_path / "c.toml")
    assert query(off, "status") is None
