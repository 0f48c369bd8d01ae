"""Extension points of the master and its workers: where status, metrics and watchdogs plug in.

A hook is an object with any of these methods; the master calls them in its loop (never from a
signal handler) and the worker calls `worker_started` in the child on its own event loop.
Subclass `Hook` and override what you need, then pass it to `Master(config, hooks=[...])`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aioworker.supervisor.master import Master, Worker
    from aioworker.supervisor.worker import WorkerContext, WorkerSpec

__all__ = ["Hook"]


class Hook:
    """No-op base: every method is optional."""

    def master_started(self, master: Master) -> None:
        """Listeners are bound, no worker forked yet: create shared memory, open sockets here
        (register their fds with `master.add_reader`); when that fails, call
        `master.abort_start(message)`."""

    def before_spawn(self, master: Master, spec: WorkerSpec) -> None:
        """In the master, just before a fork: put what the child needs in `spec.extra`
        (e.g. its scoreboard index); the master's Worker record gets a copy."""

    def worker_spawned(self, master: Master, worker: Worker) -> None:
        """In the master, right after a fork."""

    def worker_ready(self, master: Master, worker: Worker) -> None:
        """In the master, once the worker said it is accepting."""

    def worker_exited(self, master: Master, worker: Worker, reason: str) -> None:
        """In the master, once the worker was reaped; `reason` says how it died."""

    def tick(self, master: Master, now: float) -> None:
        """In the master, once per loop turn (at least every `master.TICK` seconds)."""

    def master_stopping(self, master: Master) -> None:
        """In the master, when a stop begins (graceful or fast)."""

    def master_stopped(self, master: Master) -> None:
        """In the master, after the last worker exited: release what master_started made."""

    def worker_started(self, ctx: WorkerContext) -> None:
        """In the worker, on its event loop, once it accepts: start heartbeat timers here."""

    def worker_draining(self, ctx: WorkerContext) -> None:
        """In the worker, once SIGTERM stopped accepting and requests in progress are draining."""
