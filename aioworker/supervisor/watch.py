"""Development reload: notice changed .py files under watched paths.

Stdlib polling of modification times by default (one `os.scandir` walk per second); when the
optional `watchfiles` package is installed, its thread reports changes through a pipe instead.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["PollingWatcher", "ThreadWatcher", "make_watcher"]

log = logging.getLogger("aioworker.watch")

_SKIP = {"__pycache__", "node_modules", "site-packages", ".venv", "venv", ".git"}


def _py_files(root: Path) -> Iterator[tuple[str, int]]:
    if root.suffix == ".py" and not root.is_dir():
        # An editor's atomic save may replace the file between two looks: just not there now.
        try:
            yield str(root), root.stat().st_mtime_ns
        except OSError:
            pass
        return
    stack = [str(root)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIP:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    yield entry.path, entry.stat().st_mtime_ns
            except OSError:
                continue


class PollingWatcher:
    """Compares modification times of every .py file on each `changed()` call."""

    fileno: int | None = None

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._seen = self._snapshot()

    def _snapshot(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for path in self.paths:
            seen.update(_py_files(path))
        return seen

    def changed(self) -> list[str]:
        now = self._snapshot()
        diff = sorted(p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p))
        self._seen = now
        return diff

    def close(self) -> None:
        pass


class ThreadWatcher:
    """`watchfiles` in a thread; a byte on a pipe wakes the master's selector."""

    def __init__(self, paths: Sequence[Path]) -> None:
        import watchfiles

        self._watchfiles = watchfiles
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self.fileno: int | None = self._read
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the watcher runs: later changes are seen
        self._changes: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, args=([str(p) for p in paths],), daemon=True
        )
        self._thread.start()

    def _run(self, paths: list[str]) -> None:
        only_py = self._watchfiles.PythonFilter()
        # yield_on_timeout: the first (empty) batch says the watcher is set up.
        batches = self._watchfiles.watch(
            *paths,
            watch_filter=only_py,
            stop_event=self._stop,
            yield_on_timeout=True,
            rust_timeout=200,
        )
        for batch in batches:
            self.ready.set()
            if batch:
                with self._lock:
                    self._changes.extend(path for _, path in batch)
                os.write(self._write, b"x")

    def changed(self) -> list[str]:
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass
        with self._lock:
            changes, self._changes = sorted(set(self._changes)), []
        return changes

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)  # it may still be writing to the pipe
        os.close(self._read)
        os.close(self._write)


def make_watcher(paths: Sequence[Path]) -> PollingWatcher | ThreadWatcher:
    missing = [p for p in paths if not p.exists()]
    if missing:
        log.warning("watch: %s: no such file or directory", ", ".join(map(str, missing)))
    paths = [p for p in paths if p not in missing]
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        log.info("watching %s (polling)", ", ".join(map(str, paths)))
        return PollingWatcher(paths)
    watcher = ThreadWatcher(paths)
    watcher.ready.wait(10)
    log.info("watching %s (watchfiles)", ", ".join(map(str, paths)))
    return watcher
