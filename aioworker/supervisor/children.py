"""What the master hears from its workers: notify pipes, exits, and the outcome of a start.

A mixin of Master, like `signals`: each worker writes `ready`, `error TEXT` or
`recycle REASON` lines on its pipe; each reaped exit is described, counted and fed to the plan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from aioworker.supervisor import plan as planner
from aioworker.supervisor.process import describe_exit
from aioworker.supervisor.records import Group, Worker

__all__ = ["Children"]

log = logging.getLogger("aioworker.master")


class Children:
    """Mixin of Master: reading workers' pipes, reaping them, reporting the start."""

    if TYPE_CHECKING:  # provided by Master
        groups: dict[str, Group]
        workers: dict[int, Worker]
        slots: dict[tuple[str, int], planner.SlotState]
        starting: bool
        stopping: bool
        exit_code: int
        pid: int
        _notify_fd: int | None
        _start_failure: str

        def remove_reader(self, fd: int) -> None: ...
        def recycle_worker(self, pid: int, reason: str, cause: str = "") -> None: ...
        def stop(self, fast: bool = False) -> None: ...
        def _wants(self) -> list[planner.GroupWant]: ...
        def _call_hooks(self, name: str, *args: Any) -> None: ...

    def _read_notify(self, w: Worker) -> None:
        try:
            data = os.read(w.pipe, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(w)
            return
        w.buffer += data
        *lines, w.buffer = w.buffer.split(b"\n")
        for raw in lines:
            kind, _, text = raw.decode("utf-8", "replace").partition(" ")
            if kind == "ready" and w.ready_at is None:
                w.ready_at = time.monotonic()
                log.info(
                    "ready group=%s slot=%d pid=%d generation=%d",
                    w.group,
                    w.slot,
                    w.pid,
                    w.generation,
                )
                self._call_hooks("worker_ready", self, w)
            elif kind == "error":
                w.error = text
            elif kind == "recycle":
                self.recycle_worker(w.pid, text)

    def _close_pipe(self, w: Worker) -> None:
        if w.pipe >= 0:
            self.remove_reader(w.pipe)
            os.close(w.pipe)
            w.pipe = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            if w.pipe >= 0:
                self._read_notify(w)  # a last error line may still be in the pipe
                self._close_pipe(w)
            if w.handover is not None:
                w.handover.close()
                w.handover = None
            self._exited(w, describe_exit(status, w.killed))

    def _exited(self, w: Worker, how: str) -> None:
        group = self.groups[w.group]
        now = time.monotonic()
        info = w.info()
        expected = planner.exit_requested(info)
        if expected:
            log.info("exited pid=%d group=%s slot=%d: %s", w.pid, w.group, w.slot, how)
        else:
            detail = f": {w.error}" if w.error else ""
            when = "before it was ready" if w.ready_at is None else "unexpectedly"
            log.warning(
                "worker died pid=%d group=%s slot=%d %s, %s%s",
                w.pid,
                w.group,
                w.slot,
                when,
                how,
                detail,
            )
            group.restarts[planner.exit_cause(info)] += 1
            group.last_exits.append(f"pid {w.pid} slot {w.slot}: {how}{detail}")
        older = planner.older_serves_slot(info, [o.info() for o in self.workers.values()])
        key = (w.group, w.slot)
        before = self.slots.get(key, planner.SlotState())
        after = planner.after_exit(before, info, now, error=w.error or how, replaced_by_older=older)
        self.slots[key] = after
        if group.reloading and info.generation == group.generation and not (expected or info.ready):
            # The reload's new code cannot start (whether an older worker still serves the slot
            # or not): what `aioworker reload` reports, with the worker's own reason.
            group.reload_state, group.reload_error = "failed", w.error or how
        if planner.reload_failed(info, older):
            log.error(
                "reload failed group=%s slot=%d: %s; keeping the old workers",
                w.group,
                w.slot,
                w.error or how,
            )
            group.reloading = False
        elif planner.group_failing(self.slots, w.group) and not expected and not self.stopping:
            log.error(
                "group failing group=%s: %d consecutive failures, next try in %.1fs",
                w.group,
                after.failures,
                max(0.0, after.retry_at - now),
            )
        self._call_hooks("worker_exited", self, w, how)

    def _check_started(self) -> None:
        if self.stopping and not self.exit_code:
            self.starting = False
            self._tell_parent("error stopped before every group was up")
            return
        wants = self._wants()
        infos = [w.info() for w in self.workers.values()]
        for want in wants:
            if planner.start_failed(want, infos, self.slots):
                error = self.slots[(want.name, 0)].last_error
                log.error("group %s cannot start: %s", want.name, error)
                self._tell_parent(f"error group {want.name} cannot start: {error}")
                self.exit_code = 1
                self.stop(fast=True)
                self.starting = False
                return
        if not all(planner.start_settled(want, infos, self.slots) for want in wants):
            return
        self.starting = False
        names = ",".join(self.groups)
        log.info("started pid=%d groups=%s", self.pid, names)
        self._tell_parent("ok")

    def _tell_parent(self, line: str) -> None:
        """Tell a waiting `start -d` "ok" now; an "error ..." is held (the first one) until
        `report_start_failure`, once the master has cleaned up: the foreground process exits
        on the line, and must not find the pid file still there."""
        if line != "ok":
            self._start_failure = self._start_failure or line
            return
        self.report_start_failure(line)

    def report_start_failure(self, line: str = "") -> None:
        """Write `line` (default: the held error) to a waiting `start -d`, once."""
        line = line or self._start_failure
        if self._notify_fd is not None and line:
            with contextlib.suppress(OSError):
                os.write(self._notify_fd, line.encode("utf-8", "replace") + b"\n")
                os.close(self._notify_fd)
            self._notify_fd = None
