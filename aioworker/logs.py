"""Logging setup for the master and its workers, and reopening the log file on SIGUSR1."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["FORMAT", "redirect_to_file", "reopen", "setup"]

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"

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


def redirect_to_file(path: str) -> None:
    """Point stdout and stderr at `path` (appending), so tracebacks land there too."""
    global _log_file
    _log_file = path
    _dup_to_std(path)


def reopen() -> bool:
    """Reopen the log file after rotation; False when logging to a terminal or pipe."""
    if not _log_file:
        return False
    _dup_to_std(_log_file)
    return True


def _dup_to_std(path: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
