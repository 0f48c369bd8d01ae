"""The master process: binds the listeners, forks and supervises the groups' workers.

A plain process with no event loop: signal handlers only queue the signal (the wakeup fd
wakes the selector) and the loop dispatches `handle_<name>()`. Decisions come from the pure
`plan`; this module and its mixins (`signals`, `children`, `steering`, `reloading`) are the
only code that forks,
signals and reaps workers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aioworker import logs
from aioworker.config import Config, GroupSettings
from aioworker.importer import describe_error
from aioworker.sockets import BindError, GroupSockets, bind_group
from aioworker.supervisor import handover, records, worker
from aioworker.supervisor import plan as planner
from aioworker.supervisor.check import check_ids
from aioworker.supervisor.children import Children
from aioworker.supervisor.commands import commands
from aioworker.supervisor.control import ControlError, ControlServer
from aioworker.supervisor.hooks import Hook, WorkerSpec
from aioworker.supervisor.process import start_lifeline
from aioworker.supervisor.records import Group, Worker
from aioworker.supervisor.reloading import Reloading
from aioworker.supervisor.signals import SignalHandling
from aioworker.supervisor.steering import Steering
from aioworker.supervisor.watch import PollingWatcher, ThreadWatcher

__all__ = ["Group", "Master", "Worker"]

log = logging.getLogger("aioworker.master")

FAST_STOP_TIMEOUT = 3.0  # seconds workers get after SIGQUIT before SIGKILL
KILL_MARGIN = 3.0  # beyond graceful_timeout: the worker enforces it (+1 s), the master backs it up


class StartError(Exception):
    """The master cannot start; the message says why."""


class Master(Children, Reloading, SignalHandling, Steering):
    """Runs `config`'s groups until stopped; `run()` returns the process exit code."""

    # Seconds between loop turns when nothing happens: hooks see a blocked worker within one
    # tick of its missed heartbeats, and its slot is steered away from the turn after.
    TICK = 0.05

    def __init__(
        self,
        config: Config,
        *,
        hooks: Iterable[Hook] = (),
        watch: Sequence[str] = (),
        notify_fd: int | None = None,
    ) -> None:
        self.config = config
        self.hooks: list[Hook] = list(hooks)
        self.groups: dict[str, Group] = {}
        self.workers: dict[int, Worker] = {}
        self.slots: dict[tuple[str, int], planner.SlotState] = {}
        self.selector = selectors.DefaultSelector()
        self.starting = True
        self.stopping = False
        self.fast = False
        self.exit_code = 0
        self.pid = os.getpid()
        self._signals: collections.deque[int] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        self._watch_paths = list(watch)
        self._watcher: PollingWatcher | ThreadWatcher | None = None
        self._next_poll = 0.0
        self._notify_fd = notify_fd
        self._start_failure = ""
        self._private_fds: set[int] = set()
        self.control: ControlServer | None = None
        self.log_relay: logs.Relay | None = None

    # ------------------------------------------------------------------ hook points

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback()` from the loop whenever `fd` is readable (control, metrics)."""
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def close_in_workers(self, fd: int) -> None:
        """Have every worker forked from now on close `fd` (registered readers already are)."""
        self._private_fds.add(fd)

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)

    def kill_worker(self, pid: int, reason: str, cause: str = "killed") -> None:
        """Kill a worker now (watchdog: its loop is blocked); its replacement is counted in
        the group's restarts under `cause`."""
        w = self.workers.get(pid)
        if w is not None and not w.killed:
            log.warning("killing pid=%d group=%s slot=%d: %s", pid, w.group, w.slot, reason)
            w.killed = True
            w.cause = cause
            w.error = reason
            self._signal(pid, signal.SIGKILL)

    def recycle_worker(self, pid: int, reason: str, cause: str = "") -> None:
        """Replace a worker gracefully: a new one becomes ready first, then this one drains.
        A `cause` ("memory") is counted in the group's restarts."""
        w = self.workers.get(pid)
        if w is not None and not w.recycle and not w.stopping_since:
            log.info("recycling pid=%d group=%s slot=%d: %s", pid, w.group, w.slot, reason)
            w.recycle = reason
            if cause:
                self.groups[w.group].restarts[cause] += 1

    def signal_worker(self, pid: int, sig: int) -> None:
        """Send a live worker a signal (the watchdog's stack dump and refresh requests)."""
        if pid in self.workers:
            self._signal(pid, sig)

    def set_count(self, name: str, count: int) -> None:
        """Run `count` workers in group `name` from now on; 0 stops the group (it drains),
        the master and the other groups go on. The group's listeners stay open: connections
        wait in the kernel's queue until the group runs again."""
        group = self.groups[name]
        if count < 0:
            raise ValueError("count must be 0 or more")
        log.info("count group=%s %d -> %d", name, group.count, count)
        group.count = count

    def stop(self, fast: bool = False) -> None:
        if self.stopping and (self.fast or not fast):
            return
        self.stopping = True
        if fast:
            self.fast = True
            for w in self.workers.values():
                self._signal(w.pid, signal.SIGQUIT)
                w.stopping_since = w.stopping_since or time.monotonic()
        log.info("%s stop", "fast" if fast else "graceful")
        for group in self.groups.values():
            # New connections are refused from now on; workers keep their copies to drain.
            if group.sockets is not None:
                group.sockets.close()
        self._call_hooks("master_stopping", self)

    def abort_start(self, message: str) -> None:
        """Give up starting (a hook could not set up what the config asks for): log it, tell
        the waiting `start -d` why, stop every worker and exit 1."""
        log.error("cannot start: %s", message)
        self._tell_parent(f"error {message}")
        self.exit_code = 1
        self.starting = False
        self.stop(fast=True)

    def status(self) -> dict[str, Any]:
        """Plain data for `status`: groups, targets, workers, restarts and failures."""
        return records.status(
            self.pid, self.stopping, self.groups, self.workers, self.slots, time.monotonic()
        )

    def describe(self) -> dict[str, Any]:
        """What the control socket's `status` answers: `status()`, enriched by each hook."""
        document = self.status()
        for hook in self.hooks:
            try:
                document = hook.describe(self, document)
            except Exception:
                log.exception("hook %s.describe failed", type(hook).__name__)
        return document

    # ------------------------------------------------------------------ life cycle

    def run(self) -> int:
        try:
            self._setup()
        except StartError as exc:
            message = str(exc)
            log.error("cannot start: %s", message)
            self._tell_parent(f"error {message}")
            self._close_listeners()
            return 1
        try:
            while not (self.stopping and not self.workers):
                self._turn()
        finally:
            self._close_listeners()
            self._call_hooks("master_stopped", self)
            if self._watcher is not None:
                self._watcher.close()
            if self.control is not None:
                with contextlib.suppress(OSError):
                    self.control.close()
            self._restore_signals()
            if self.log_relay is not None:
                self.log_relay.pump()  # the last lines of the workers that just exited
                self.log_relay.close()
        # Whatever ended the start early, the waiting `start -d` gets a line (once at most).
        self._tell_parent("error the master stopped before every group was up")
        log.info("master exiting with code %d", self.exit_code)
        return self.exit_code

    def _setup(self) -> None:
        base = str(self.config.base_dir)
        if base not in sys.path:
            sys.path.insert(0, base)
        problems = check_ids(self.config)
        if problems:
            raise StartError(problems[0])
        for settings in self.config.groups:
            app = self._preload(settings) if settings.preload else None
            sockets = self._bind(settings) if settings.listen else None
            # A host that only enqueues ([queue] consume = false) runs none of a queue-fed
            # group's workers: another master pulls its jobs from the shared Redis.
            count = 0 if settings.queue and not self.config.queue.consume else settings.workers
            self.groups[settings.name] = Group(settings, sockets, count, app=app)
            if sockets is not None:
                log.info(
                    "listening group=%s url=%s sockets=%d",
                    settings.name,
                    sockets.url,
                    len(sockets.sockets),
                )
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeup)
        self._install_signals()
        self.close_in_workers(start_lifeline())
        self.log_relay = logs.start_relay()
        if self.log_relay is not None:
            # Drained once a turn (at least 20 times a second), not on every line: woken per
            # line, the master spent ~70 us of CPU per access-log line (10 s of wrk).
            self.close_in_workers(self.log_relay.read_fd)
        if self.config.server.control_socket:
            try:
                self.control = ControlServer(self.config.control_path, commands(self))
            except ControlError as exc:
                raise StartError(str(exc)) from None
            self.control.attach(self.selector)
        self._start_watching()
        self._call_hooks("master_started", self)

    def _bind(self, settings: GroupSettings) -> GroupSockets:
        try:
            return bind_group(settings)
        except BindError as exc:
            where = self.config.path or "<config>"
            raise StartError(f"{where}: groups.{settings.name}.listen: {exc}") from None

    def _preload(self, settings: GroupSettings) -> Any:
        try:
            return worker.import_target(settings)
        except Exception as exc:  # the app's own error, whatever it raises at import
            where = self.config.path or "<config>"
            key = "main" if settings.main else "app"
            target = settings.main or settings.app
            raise StartError(
                f"{where}: groups.{settings.name}.{key}: cannot import {target}: "
                + describe_error(exc)
            ) from exc

    def _turn(self) -> None:
        now = time.monotonic()
        wants = self._wants()
        result = planner.plan(wants, [w.info() for w in self.workers.values()], self.slots, now)
        for action in result.actions:
            self._carry_out(action, now)
        self._steer(wants)
        timeout = self.TICK
        if result.wake_at is not None:
            timeout = min(timeout, max(0.0, result.wake_at - now))
        for key, _ in self.selector.select(timeout):
            try:
                key.data()
            except Exception:  # a reader (control, metrics, a worker's pipe) hit a fault
                log.exception("handling a readable descriptor failed; the master goes on")
        self._dispatch_signals()
        if self.log_relay is not None:
            self.log_relay.pump()
        self._reap()
        now = time.monotonic()
        for slot_key, state in list(self.slots.items()):
            mine = [w.info() for w in self.workers.values() if (w.group, w.slot) == slot_key]
            self.slots[slot_key] = planner.settle(state, mine, now)
        if self._watcher is not None and self._watcher.fileno is None and now >= self._next_poll:
            self._next_poll = now + 1.0
            self._check_watch()
        self._steer(self._wants())  # workers that became ready this turn take connections
        if self.starting:
            self._check_started()
        self._check_reloaded()
        if self.control is not None:
            self.control.tick(now)
        self._call_hooks("tick", self, now)
        self._steer(self._wants())  # at once: a hook may have just seen a worker block

    def _wants(self) -> list[planner.GroupWant]:
        wants = []
        for g in self.groups.values():
            http = g.settings.http
            stop_timeout = FAST_STOP_TIMEOUT if self.fast else http.graceful_timeout + KILL_MARGIN
            wants.append(
                planner.GroupWant(
                    g.name,
                    0 if self.stopping else g.count,
                    g.generation,
                    start_timeout=g.settings.start_timeout,
                    stop_timeout=stop_timeout,
                )
            )
        return wants

    def _carry_out(self, action: planner.Action, now: float) -> None:
        if isinstance(action, planner.Spawn):
            self._spawn(self.groups[action.group], action.slot, now)
        elif isinstance(action, planner.Stop):
            w = self.workers[action.pid]
            log.info("stopping pid=%d group=%s slot=%d: %s", w.pid, w.group, w.slot, action.reason)
            w.stopping_since = now
            self._signal(w.pid, signal.SIGQUIT if self.fast else signal.SIGTERM)
        else:
            w = self.workers[action.pid]
            log.warning(
                "killing pid=%d group=%s slot=%d: %s", w.pid, w.group, w.slot, action.reason
            )
            w.killed = True
            w.error = w.error or action.reason
            self._signal(w.pid, signal.SIGKILL)

    def _spawn(self, group: Group, slot: int, now: float) -> None:
        try:
            sock = group.sockets.for_slot(slot) if group.sockets is not None else None
            read_fd, write_fd = os.pipe()
            per_slot = group.sockets is not None and group.sockets.reuse_port
            ends = handover.channel() if per_slot else None
        except OSError as exc:  # no descriptors left, or a new slot's port taken meanwhile
            self._spawn_failed(group.name, slot, now, str(exc))
            return
        mine, theirs = ends if ends is not None else (None, None)
        keep = {write_fd, sock.fileno() if sock is not None else -1}
        if theirs is not None and mine is not None:
            keep.add(theirs.fileno())
        close = sorted((self._owned_fds() | ({mine.fileno()} if mine else set())) - keep)
        spec = WorkerSpec(
            self.config, group.settings, slot, sock, write_fd, close, group.app, self.hooks
        )
        spec.handover = theirs
        self._call_hooks("before_spawn", self, spec)
        logs.flush_std()  # or the child would write the unflushed lines a second time
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory
            os.close(read_fd)
            os.close(write_fd)
            for end in ends or ():
                end.close()
            self._spawn_failed(group.name, slot, now, f"fork failed: {exc.strerror}")
            return
        if pid == 0:  # pragma: no cover - the child; covered by the end-to-end tests
            os.close(read_fd)
            worker.run(spec, self.pid)
        os.close(write_fd)
        if theirs is not None:
            theirs.close()
        os.set_blocking(read_fd, False)
        w = Worker(pid, group.name, slot, group.generation, now, pipe=read_fd, handover=mine)
        w.extra = dict(spec.extra)
        self.workers[pid] = w
        self.add_reader(read_fd, lambda: self._read_notify(w))
        log.info(
            "spawned pid=%d group=%s slot=%d generation=%d", pid, group.name, slot, group.generation
        )
        self._call_hooks("worker_spawned", self, w)

    def _spawn_failed(self, name: str, slot: int, now: float, error: str) -> None:
        # Retried later, as for a crash: the master itself must never fall over on it.
        key = (name, slot)
        self.slots[key] = planner.after_spawn_failure(
            self.slots.get(key, planner.SlotState()), now, error
        )
        log.error("cannot start a worker group=%s slot=%d: %s", name, slot, error)

    def _owned_fds(self) -> set[int]:
        fds = {key.fd for key in self.selector.get_map().values()}
        fds |= {self.selector.fileno(), self._wake_w, *self._private_fds}
        fds |= {w.handover.fileno() for w in self.workers.values() if w.handover is not None}
        for g in self.groups.values():
            if g.sockets is not None:
                fds |= g.sockets.fds()
        if self._notify_fd is not None:
            fds.add(self._notify_fd)
        return fds

    def _call_hooks(self, name: str, *args: Any) -> None:
        # A failing hook (status, metrics, watchdog) must not take the master and its groups
        # down with it: log it and go on.
        for hook in self.hooks:
            try:
                getattr(hook, name)(*args)
            except Exception:
                log.exception("hook %s.%s failed", type(hook).__name__, name)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _close_listeners(self) -> None:
        for group in self.groups.values():
            if group.sockets is not None:
                group.sockets.close()
