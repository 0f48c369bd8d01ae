"""What the master does on each signal: handlers only queue, `handle_<name>()` acts in the loop."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aioworker import logs
from aioworker.config import Config
from aioworker.supervisor import plan as planner
from aioworker.supervisor.records import Group, Worker

__all__ = ["SIGNALS", "SignalHandling"]

log = logging.getLogger("aioworker.master")

SIGNALS = ("TERM", "INT", "QUIT", "HUP", "USR1", "TTIN", "TTOU", "CHLD")


class SignalHandling:
    """Mixin of Master: the self-pipe, the queue and one `handle_<name>()` per signal."""

    _signals: collections.deque[int]
    _wake_r: int
    _wake_w: int

    if TYPE_CHECKING:  # provided by Master
        config: Config
        groups: dict[str, Group]
        workers: dict[int, Worker]
        stopping: bool

        def stop(self, fast: bool = False) -> None: ...
        def reload(self, names: Sequence[str] | None = None) -> list[str]: ...
        def _signal(self, pid: int, sig: int) -> None: ...

    def _dispatch_signals(self) -> None:
        while self._signals:
            name = signal.Signals(self._signals.popleft()).name[3:].lower()
            try:
                getattr(self, f"handle_{name}")()
            except Exception:
                # A fault while handling one signal (a full disk, a removed directory, no
                # descriptors left) must not take the master and every worker down with it.
                log.exception("handling SIG%s failed; the master goes on", name.upper())

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._enqueue)

    def _restore_signals(self) -> None:
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), signal.SIG_DFL)

    def _enqueue(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def _drain_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def handle_term(self) -> None:
        self.stop(fast=self.stopping)  # a second TERM turns a graceful stop into a fast one

    def handle_int(self) -> None:
        # Ctrl-C does what TERM does, as in uvicorn and gunicorn: requests in progress
        # finish and lifespan shutdown runs; a second Ctrl-C stops at once. QUIT is the
        # immediate stop.
        self.handle_term()

    def handle_quit(self) -> None:
        self.stop(fast=True)

    def handle_hup(self) -> None:
        self.reload()

    def handle_usr1(self) -> None:
        try:
            reopened = logs.reopen()
        except OSError as exc:
            # The old file (or its descriptor, if it was removed) stays in use.
            log.error("cannot reopen the log file: %s; still writing to the old one", exc)
        else:
            log.info(
                "log file %s", "reopened" if reopened else "not in use (stderr); nothing to do"
            )
        for w in self.workers.values():
            self._signal(w.pid, signal.SIGUSR1)

    def handle_ttin(self) -> None:
        self._resize(+1)

    def handle_ttou(self) -> None:
        self._resize(-1)

    def handle_chld(self) -> None:
        pass  # _reap runs every turn

    def _resize(self, delta: int) -> None:
        default = self.config.default_group
        if default is None or self.stopping:
            return
        group = self.groups[default.name]
        group.count = planner.resized(group.count, delta)
        log.info("count group=%s now %d", group.name, group.count)
