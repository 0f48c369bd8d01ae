"""The control socket: the master answers `status`, `reload`, `stop` and `start` on a unix socket.

Protocol: the client connects, sends one JSON object on one line, ``{"command": "reload",
"groups": ["web"]}``, and reads one JSON object on one line; the master closes the connection.
The commands themselves are the master's (``aioworker.supervisor.commands``).
Success is ``{"ok": true, ...}``, failure ``{"ok": false, "error": "..."}``.

The socket file is created with mode 0600 (under a umask, then chmod'ed, so there is no moment
when others may connect): whoever can connect can stop the server. The server side runs on the
master's selector (``aioworker.http.oneshot``); ``request()`` is the client the CLI uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aioworker.config import Config
from aioworker.http.oneshot import OneShotServer, OneShotService

__all__ = [
    "CommandError",
    "ControlError",
    "ControlPermissionError",
    "ControlServer",
    "NoMaster",
    "query",
    "request",
]

log = logging.getLogger("aioworker.control")

MAX_REQUEST = 64 * 1024
MAX_REPLY = 16 * 1024 * 1024
# sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_PATH = 107

Command = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(RuntimeError):
    """The control socket could not be used, or the master refused the command."""


class ControlPermissionError(ControlError):
    """The control socket exists but this user may not connect to it."""


class NoMaster(ControlError):
    """No master answers on the control socket (none running, or a stale socket file)."""


class CommandError(Exception):
    """Raised by a command handler: the client gets ``{"ok": false, "error": message}``."""


def _check_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_PATH:
        raise ControlError(
            f"control socket path {path} is longer than {MAX_PATH} bytes; "
            "set a shorter [server] control_socket"
        )


class ControlServer(OneShotService):
    """The master's side: bind the socket (0600) and answer commands from its selector loop."""

    def __init__(
        self, path: str | os.PathLike[str], commands: Mapping[str, Command], *, timeout: float = 5.0
    ) -> None:
        self.path = Path(path)
        self.commands = dict(commands)
        _check_path(self.path)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise ControlError(
                f"cannot create control socket {self.path}: {exc.strerror}"
            ) from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        sock.listen(16)
        self.server = OneShotServer(
            sock,
            self._respond,
            lambda data: b"\n" in data,
            max_request=MAX_REQUEST,
            timeout=timeout,
        )

    def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode  # a link is "not a socket": left alone
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            log.info("removing stale control socket %s", self.path)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        finally:
            probe.close()
        raise ControlError(f"another master answers on {self.path}")

    def close(self) -> None:
        """Stop answering and remove the socket file (only if it is still ours)."""
        super().close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    def _respond(self, data: bytes) -> bytes:
        reply = self.handle(data.split(b"\n", 1)[0])
        return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line to one reply object."""
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"ok": False, "error": "expected one JSON object on one line"}
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return {"ok": False, "error": 'expected {"command": NAME, ...}'}
        name = message.pop("command")
        command = self.commands.get(name)
        if command is None:
            known = ", ".join(sorted(self.commands))
            return {"ok": False, "error": f"unknown command {name!r}; known: {known}"}
        try:
            reply = command(message)
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control command %s failed", name)
            return {"ok": False, "error": f"{name} failed in the master: {exc}"}
        return {"ok": True, **reply}


def request(
    path: str | os.PathLike[str], command: str, *, timeout: float = 5.0, **args: Any
) -> dict[str, Any]:
    """Send one command to the master and return its reply (``ok`` is true).

    Raises NoMaster when no master answers on `path`, ControlError for anything else (permission,
    timeout, a refused command, with the master's message).
    """
    path = Path(path)
    _check_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise NoMaster(f"no master is running (no control socket {path})") from None
        except ConnectionRefusedError:
            raise NoMaster(f"no master is running (stale control socket {path})") from None
        except PermissionError:
            raise ControlPermissionError(
                f"permission denied on control socket {path}; run as the master's user"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        line = json.dumps({**args, "command": command}, separators=(",", ":")).encode()
        reply = b""
        try:
            sock.sendall(line + b"\n")
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
                if len(reply) > MAX_REPLY:
                    raise ControlError(f"the master's reply on {path} is too large")
        except TimeoutError:
            raise ControlError(
                f"the master did not answer within {timeout:g} s on {path}"
            ) from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not reply:
        raise ControlError(f"the master closed {path} without answering")
    try:
        answer = json.loads(reply)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlError(f"unreadable reply from the master on {path}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"unexpected reply from the master on {path}")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "the master refused the command")))
    return answer


def query(config: Config, command: str, **args: Any) -> dict[str, Any] | None:
    """For the CLI: the master's reply (without ``ok``), or None when no master answers on the
    config's control socket (or it has none), so the caller falls back to the pid file and
    signals. Raises ControlError when a master answers but refuses or cannot be reached."""
    if not config.server.control_socket:
        return None
    try:
        reply = request(config.control_path, command, **args)
    except NoMaster:
        return None
    reply.pop("ok", None)
    return reply
