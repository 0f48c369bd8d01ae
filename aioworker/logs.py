"""Logging setup for the master and its workers, and reopening the log file on SIGUSR1."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import weakref
from typing import Any, Protocol

__all__ = [
    "FORMAT",
    "Relay",
    "flush_std",
    "hold_back",
    "open_log",
    "own_handler",
    "redirect_to_file",
    "relay_in_worker",
    "reopen",
    "setup",
    "start_relay",
]

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
# logging.Formatter's own defaults, as the lines laid out without it assume (own_handler).
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_MSEC_FORMAT = "%s,%03d"


class Flushable(Protocol):
    def flush(self) -> None: ...


_held_back: weakref.WeakSet[Flushable] = weakref.WeakSet()

_log_file = ""


def setup(level: str = "info") -> None:
    """Log to stderr (the log file in daemon mode, where stderr is redirected to it)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_aioworker", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._aioworker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aioworker").setLevel(level.upper())


def own_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler `setup` installed, when it alone would write `logger`'s INFO records, laid
    out by FORMAT; else None (the embedding program configured handlers, filters or another
    format of its own, and records must go through logging).

    Knowing this, a caller may write lines in FORMAT's layout to the handler's stream itself:
    the access log does, in batches, as a record through logging costs ~50 us.
    """
    found: logging.StreamHandler[Any] | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or not getattr(handler, "_aioworker", False):
                return None
            assert isinstance(handler, logging.StreamHandler)
            found = handler
        if not current.propagate:
            break
        current = current.parent
    if found is None or found.filters or found.level > logging.INFO or found.terminator != "\n":
        return None
    formatter = found.formatter
    if (
        type(formatter) is not logging.Formatter
        or formatter._fmt != FORMAT
        or formatter.datefmt is not None
        or formatter.converter is not time.localtime
        # Settings logging documents for every formatter and record at once.
        or formatter.default_time_format != _TIME_FORMAT
        or formatter.default_msec_format != _MSEC_FORMAT
        or not logging.logProcesses
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    return found


def hold_back(writer: Flushable) -> None:
    """Register `writer`, which holds lines back to write them in batches (the access log):
    flush_std() writes what it holds first, so an exit (a fast stop, a crash) loses none."""
    _held_back.add(writer)


def redirect_to_file(path: str) -> None:
    """Point stdout and stderr at `path` (appending), so tracebacks land there too."""
    global _log_file
    _dup_to_std(path)  # raises OSError before anything changed
    _log_file = path


def in_file() -> str:
    """The log file stdout and stderr are written to, or "" (a terminal or pipe)."""
    return _log_file


def reopen() -> bool:
    """Reopen the log file after rotation; False when logging to a terminal or pipe.

    Raises OSError when the file cannot be opened (its directory removed, read-only, no
    descriptors left): stdout and stderr then still point at the old file, nothing is lost."""
    if not _log_file:
        return False
    _dup_to_std(_log_file)
    return True


def open_log(path: str | os.PathLike[str]) -> int:
    """Open (create) the log file for appending, never through a symbolic link: in a directory
    others can write, a planted link would have root append to a file of their choosing."""
    return os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
    )


def flush_std() -> None:
    """Flush the lines held back (hold_back), then stdout and stderr, before their descriptors
    change, the process forks or exits; a full disk, a closed stream or an app's replacement
    stream that fails is no reason to fail (at worst a line is lost or written twice)."""
    for writer in list(_held_back):
        with contextlib.suppress(Exception):
            writer.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _dup_to_std(path: str) -> None:
    flush_std()
    fd = open_log(path)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


class Relay:
    """The workers' stdout and stderr, carried to the master over one pipe; the master alone
    writes the log file.

    Workers that dropped privileges cannot reopen a root-owned log after rotation, and a
    worker printing to a full disk fails; with one writer, USR1 reopens one descriptor and a
    full disk loses lines, never a worker. A write of up to PIPE_BUF (4096) bytes is atomic on
    a pipe, so the lines of different workers do not interleave.
    """

    # Absorbs bursts while the master is busy (the kernel's default limit for unprivileged
    # processes, /proc/sys/fs/pipe-max-size); a worker blocks only when it is full.
    SIZE = 1 << 20
    F_SETPIPE_SZ = 1031

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        try:
            import fcntl

            fcntl.fcntl(self.read_fd, self.F_SETPIPE_SZ, self.SIZE)
        except OSError:
            pass  # the default 64 KiB still works
        os.set_blocking(self.read_fd, False)
        self.lost = 0

    def pump(self) -> None:
        """Copy what the workers wrote to the master's stderr (the log file); on a write error
        (a full disk) the data is dropped, reported once, and counted until writes succeed."""
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            if self.lost:
                note = f"[relay] {self.lost} bytes of worker output lost: log not writable\n"
                if _write_all(note.encode()) is None:
                    self.lost = 0
            if self.lost:
                self.lost += len(data)
                continue
            error = _write_all(data)
            if error is not None:
                logging.getLogger("aioworker.master").error(
                    "cannot write the workers' output to the log: %s; dropping it", error
                )
                self.lost = len(data)

    def in_worker(self) -> None:
        """In a freshly forked worker: stdout and stderr go to the master from now on (the
        read end is among the descriptors the worker closes)."""
        global _log_file
        flush_std()
        os.dup2(self.write_fd, 1)
        os.dup2(self.write_fd, 2)
        os.close(self.write_fd)
        _log_file = ""  # nothing to reopen on USR1: the master does it for everyone

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(data: bytes) -> OSError | None:
    """Write `data` to stderr whole (a write to a file may be partial once the disk fills)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(2, view) :]
    except OSError as exc:
        return exc
    return None


_relay: Relay | None = None


def start_relay() -> Relay | None:
    """In the master: a relay for the workers' output when it writes a log file, else None
    (the workers then share the master's terminal or pipe, as started)."""
    global _relay
    _relay = Relay() if _log_file else None
    return _relay


def relay_in_worker() -> None:
    """In a worker just forked: send stdout and stderr through the master's relay, if any."""
    if _relay is not None:
        _relay.in_worker()
