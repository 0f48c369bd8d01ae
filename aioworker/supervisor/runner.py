"""Run the master from Python or the CLI: pid file, daemon mode, logging, then `Master.run()`."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from aioworker import logs
from aioworker.config import Config, load, validate
from aioworker.supervisor.hooks import Hook
from aioworker.supervisor.master import Master
from aioworker.supervisor.paths import unsafe_location
from aioworker.supervisor.process import set_title

__all__ = [
    "AlreadyRunning",
    "is_master",
    "pid_alive",
    "read_pid",
    "remove_pid",
    "run",
    "write_pid",
]

log = logging.getLogger("aioworker.master")


class AlreadyRunning(RuntimeError):
    """Another master holds the pid file."""


def run(
    config: Config | str | os.PathLike[str],
    *,
    watch: Sequence[str] = (),
    daemon: bool = False,
    hooks: Iterable[Hook] = (),
) -> int:
    """Start the master for `config` (a Config or a config.toml path) with exactly `hooks`;
    return its exit code. (`aioworker.run` adds the observability hook.)

    Blocks until the master stops. Raises ConfigError for a bad file and AlreadyRunning when
    the pid file names a live master.
    """
    if isinstance(config, Config):
        validate(config)  # a Config built in code gets the checks a file gets
    else:
        config = load(config)
    problem = _unsafe_files(config)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    pid_path = config.pid_path if config.server.pid_file else None
    if pid_path is not None:
        try:
            _check_pid_file(pid_path)
        except OSError as exc:
            where = config.path or "<config>"
            print(
                f"{where}: server.pid_file: cannot read {pid_path}: {exc.strerror}", file=sys.stderr
            )
            return 1
    notify_fd = None
    if daemon:
        problem = _log_file_problem(config)
        if problem:
            # Checked here: once in the background, nothing could tell the user.
            print(problem, file=sys.stderr)
            return 1
        notify_fd = _daemonize(config)
    logs.setup(config.server.log_level)
    _warn_open_secrets(config)
    if pid_path is not None:
        try:
            write_pid(pid_path, os.getpid())
        except OSError as exc:
            where = config.path or "<config>"
            message = f"{where}: server.pid_file: cannot write {pid_path}: {exc.strerror}"
            log.error("cannot start: %s", message)
            if notify_fd is not None:  # the foreground process prints it
                with contextlib.suppress(OSError):
                    os.write(notify_fd, f"error {message}\n".encode())
            return 1
    set_title(f"aioworker: master {config.path or ''}".rstrip())
    master: Master | None = None
    try:
        master = Master(config, hooks=hooks, watch=watch, notify_fd=notify_fd)
        return master.run()
    finally:
        if os.getpid() == _master_pid:
            if pid_path is not None:
                remove_pid(pid_path, _master_pid)
            if master is not None:
                master.report_start_failure()  # after the cleanup the foreground checks


_master_pid = os.getpid()


def _check_pid_file(path: Path) -> None:
    pid = read_pid(path)
    if pid is None:
        return
    if pid != os.getpid() and is_master(pid):
        raise AlreadyRunning(f"a master is already running (pid {pid}, pid file {path})")
    log.warning("removing stale pid file %s (pid %d is not an aioworker master)", path, pid)
    remove_pid(path, pid)


def read_pid(path: Path) -> int | None:
    """The pid in `path`, or None when there is no readable pid file."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def is_master(pid: int) -> bool:
    """Whether `pid` is alive and looks like an aioworker process (pids get reused: a stale
    pid file must not make `stop` signal some unrelated process)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            cmdline = stream.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: trust the pid file
    return b"aioworker" in cmdline


def write_pid(path: Path, pid: int) -> None:
    """Write atomically: a reader sees the old file or the whole new one, never a partial."""
    global _master_pid
    _master_pid = pid
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: a new file (O_EXCL, O_NOFOLLOW) under a name no one can guess beforehand.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.write(fd, f"{pid}\n".encode())
        os.fchmod(fd, 0o644)
        os.close(fd)
        os.replace(tmp, path)  # replaces a link itself, never what it points to
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_pid(path: Path, pid: int) -> None:
    """Remove the pid file if it still names `pid` (a new master may own it by now)."""
    with contextlib.suppress(OSError):  # gone, or its directory read-only by now
        if read_pid(path) == pid:
            path.unlink()


def _warn_open_secrets(config: Config) -> None:
    """Say so when config.toml holds `env` values (often secrets) and every user can read it."""
    holders = [g.name for g in config.groups if g.env]
    if config.path is None or not holders:
        return
    try:
        mode = stat.S_IMODE(os.stat(config.path).st_mode)
    except OSError:
        return
    if mode & 0o004:
        log.warning(
            "%s holds env values (groups %s) and every user can read it (mode %o): "
            "chmod 640 it, or move secrets to an env_file of mode 600",
            config.path,
            ",".join(holders),
            mode,
        )


def _unsafe_files(config: Config) -> str:
    """The first file the master would create where another user could plant a link, as
    `file: server.key: problem`, or ""."""
    where = config.path or "<config>"
    for key in ("pid_file", "log_file", "control_socket"):
        value = getattr(config.server, key)
        problem = unsafe_location(config.resolve(value)) if value else ""
        if problem:
            return f"{where}: server.{key}: {problem}"
    return ""


def _log_file_problem(config: Config) -> str:
    """Why the daemon could not open its log file, or ""."""
    if not config.server.log_file:
        return ""
    path = config.resolve(config.server.log_file)
    try:
        os.close(logs.open_log(path))
    except OSError as exc:
        where = config.path or "<config>"
        return f"{where}: server.log_file: cannot open {path}: {exc.strerror}"
    return ""


def _exit(code: int) -> NoReturn:
    # os._exit skips flushing: printed lines piped to a file or a test would be lost.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _daemonize(config: Config) -> int:
    """Double fork into the background; the foreground process exits once the master is up.

    Returns, in the daemon, the pipe the master reports "ok" or "error ..." on.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 4096):
            chunks.append(chunk)
        line = b"".join(chunks).decode("utf-8", "replace").strip()
        if line == "ok":
            pid = read_pid(config.pid_path) if config.server.pid_file else None
            if config.server.log_file:
                where = f"logging to {config.resolve(config.server.log_file)}"
            else:
                where = "its log is discarded: set [server] log_file to keep it"
            print(f"aioworker started in the background (pid {pid}); {where}")
            _exit(0)
        print(line.removeprefix("error ") or "the master exited before it started", file=sys.stderr)
        _exit(1)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if config.server.log_file:
        logs.redirect_to_file(str(config.resolve(config.server.log_file)))
    else:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)
    with contextlib.suppress(OSError):
        os.set_inheritable(write_fd, False)
    return write_fd
