"""Extension points of the master and its workers, and what a hook may see and call there.

A hook is an object with any of `Hook`'s methods; the master calls them in its loop (never
from a signal handler) and the worker calls `worker_started`/`worker_draining` in the child on
its own event loop. Subclass `Hook`, override what you need, and pass it to
`aioworker.run(config, hooks=[...])`.

A hook sees the master through `MasterControl`, a `Protocol` declared here rather than the
`Master` class itself, so this module (and every hook) depends on the contract, not on the
master's implementation: the master imports hooks, never the other way round.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aioworker.config import Config, GroupSettings
from aioworker.supervisor.records import Group, Worker

__all__ = ["Hook", "MasterControl", "WorkerContext", "WorkerSpec"]


class MasterControl(Protocol):
    """What a hook may read and call on the running master (all in the master's loop)."""

    @property
    def config(self) -> Config:
        """The running configuration (replaced by a reload)."""

    @property
    def groups(self) -> dict[str, Group]:
        """Each group's settings, listeners, target count and restart counters, by name."""

    @property
    def workers(self) -> dict[int, Worker]:
        """Every live worker, by pid."""

    @property
    def pid(self) -> int: ...

    @property
    def selector(self) -> selectors.BaseSelector:
        """The master's selector: attach non-blocking servers (metrics) to it."""

    @property
    def hooks(self) -> list[Hook]: ...

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...

    def remove_reader(self, fd: int) -> None: ...

    def abort_start(self, message: str) -> None:
        """Give up starting: logged, told to a waiting `start -d`, exit status 1."""

    def kill_worker(self, pid: int, reason: str, cause: str = "killed") -> None:
        """SIGKILL a worker; its replacement is counted under `cause` in the restarts."""

    def recycle_worker(self, pid: int, reason: str, cause: str = "") -> None:
        """Replace a worker gracefully; a `cause` is counted in the group's restarts."""

    def set_busy(self, pid: int, busy: bool) -> None:
        """A worker's loop stopped (or resumed) turning: steer new connections away from it."""

    def signal_worker(self, pid: int, sig: int) -> None:
        """Send a worker a signal that asks, never kills (the watchdog's stack dump)."""

    def status(self) -> dict[str, Any]:
        """The master's own status as plain data (`records.status`)."""


@dataclass(slots=True)
class WorkerSpec:
    """Everything a forked worker needs, prepared by the master before the fork."""

    config: Config
    group: GroupSettings
    slot: int
    sock: socket.socket | None
    notify_fd: int  # write end of the pipe the master reads readiness from
    close_fds: Sequence[int] = ()  # the master's descriptors this worker must not keep
    app: Any = None  # the app imported in the master (preload)
    hooks: Sequence[Hook] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # filled by Hook.before_spawn
    handover: socket.socket | None = None  # connections the master moves to this worker


@dataclass(slots=True)
class WorkerContext:
    """What a hook sees inside a running worker."""

    spec: WorkerSpec
    loop: asyncio.AbstractEventLoop
    server: Any  # aioworker.http.server.Server, a queue Consumer, or None for a `main` group
    notify: Callable[[str], None]  # send one line to the master
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> GroupSettings:
        return self.spec.group

    @property
    def slot(self) -> int:
        return self.spec.slot


class Hook:
    """No-op base: every method is optional."""

    def master_started(self, master: MasterControl) -> None:
        """Listeners are bound, no worker forked yet: create shared memory, open sockets here
        (register their fds with `master.add_reader`); when that fails, call
        `master.abort_start(message)`."""

    def config_reloaded(self, master: MasterControl, old: Config) -> None:
        """A reload applied a new configuration (`master.config`); `old` is the one before:
        re-apply what this hook took from it (the metrics listener)."""

    def describe(self, master: MasterControl, status: dict[str, Any]) -> dict[str, Any]:
        """Return the status document the control socket answers, built on `status` (the
        master's records, or what an earlier hook returned)."""
        return status

    def before_spawn(self, master: MasterControl, spec: WorkerSpec) -> None:
        """In the master, just before a fork: put what the child needs in `spec.extra`
        (e.g. its scoreboard index); the master's Worker record gets a copy."""

    def worker_spawned(self, master: MasterControl, worker: Worker) -> None:
        """In the master, right after a fork."""

    def worker_ready(self, master: MasterControl, worker: Worker) -> None:
        """In the master, once the worker said it is accepting."""

    def worker_exited(self, master: MasterControl, worker: Worker, reason: str) -> None:
        """In the master, once the worker was reaped; `reason` says how it died."""

    def tick(self, master: MasterControl, now: float) -> None:
        """In the master, once per loop turn (at least every `Master.TICK` seconds)."""

    def master_stopping(self, master: MasterControl) -> None:
        """In the master, when a stop begins (graceful or fast)."""

    def master_stopped(self, master: MasterControl) -> None:
        """In the master, after the last worker exited: release what master_started made."""

    def worker_started(self, ctx: WorkerContext) -> None:
        """In the worker, on its event loop, once it accepts: start heartbeat timers here."""

    def worker_draining(self, ctx: WorkerContext) -> None:
        """In the worker, once SIGTERM stopped accepting and requests in progress are draining."""
