"""Observability as a master hook: scoreboard, watchdog, control socket, metrics and health.

``Observability()`` plugs into ``Master(config, hooks=[...])`` (and ``aioworker.run(...,
hooks=...)``) through the hook points of ``aioworker.supervisor.hooks``:

- master_started: map the scoreboard (before the first fork), bind the control socket
  (``[server] control_socket``: status; reload of all or named groups; stop of the master or of
  named groups; start of named groups) and the metrics listener (``[metrics] listen``) on the
  master's selector; when either cannot be bound, the master stops with exit code 1;
- before_spawn / worker_exited: claim a scoreboard slot for each new process, release it after
  the reap;
- worker_started (in the worker, on its loop): install the stack dump, start the heartbeat that
  copies ``server.state`` into the slot, mark it ready; worker_draining marks it draining;
- tick (every master loop turn): enforce client deadlines, sample RSS once a second, run the
  watchdog and carry its actions out (signals, log lines, kill, graceful recycle).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from aioworker.http.counters import LATENCY_BUCKETS
from aioworker.observe import metrics as prometheus
from aioworker.observe import status as status_doc
from aioworker.observe.metrics import MetricsServer
from aioworker.observe.scoreboard import (
    DRAINING,
    HEARTBEAT_INTERVAL,
    READY,
    Heartbeat,
    Scoreboard,
    ScoreboardFull,
    SlotWriter,
    start_heartbeat,
)
from aioworker.observe.watchdog import (
    BLOCKED_AFTER,
    KILL,
    KILL_GRACE,
    RECYCLE,
    REFRESH,
    REFRESH_SIGNAL,
    RSS_SAMPLES,
    STACK,
    STACK_SIGNAL,
    Limits,
    Watchdog,
    install_stack_dump,
    read_rss,
)
from aioworker.supervisor.control import CommandError, ControlError, ControlServer
from aioworker.supervisor.hooks import Hook

if TYPE_CHECKING:
    from aioworker.supervisor.master import Master, Worker
    from aioworker.supervisor.worker import WorkerContext, WorkerSpec

__all__ = ["Observability"]

log = logging.getLogger("aioworker.watchdog")

SLOT_KEY = "scoreboard"


class Observability(Hook):
    """Everything of the observability issue, wired through the master's hook points."""

    def __init__(
        self,
        *,
        heartbeat: float = HEARTBEAT_INTERVAL,
        blocked_after: float = BLOCKED_AFTER,
        kill_grace: float = KILL_GRACE,
        rss_interval: float = 1.0,
        rss_samples: int = RSS_SAMPLES,
        spare_slots: int = 16,
    ) -> None:
        self.heartbeat = heartbeat
        self.rss_interval = rss_interval
        self.spare_slots = spare_slots
        self.watchdog = Watchdog(blocked_after, kill_grace, rss_samples)
        self.board: Scoreboard | None = None
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.master: Master | None = None
        self.rss: dict[int, int] = {}
        self._next_rss = 0.0
        self._timeouts: set[int] = set()  # pids killed by the watchdog
        self._group_index: dict[str, int] = {}
        # In the worker only:
        self._writer: SlotWriter | None = None
        self._beat: Heartbeat | None = None

    # ------------------------------------------------------------------ master side

    def master_started(self, master: Master) -> None:
        mine = [h for h in master.hooks if isinstance(h, Observability)]
        if mine and mine[-1] is not self:
            # The default hook and one passed with run(hooks=...): the last one given wins,
            # the others stay inert (no board, no sockets), so nothing is done twice.
            return
        self.master = master
        self._group_index = {name: i for i, name in enumerate(master.groups)}
        # Room for every worker twice (a rolling reload overlaps old and new) plus TTIN.
        capacity = 2 * sum(g.count for g in master.groups.values()) + self.spare_slots
        self.board = Scoreboard.create(capacity, LATENCY_BUCKETS)
        try:
            self._listen(master)
        except (ControlError, OSError) as exc:  # BindError is an OSError
            # A master asked for metrics or a control socket must not run without them (a
            # readiness probe would never pass): fail like a group whose port is taken.
            self.master_stopped(master)
            master.abort_start(str(exc))  # logged, and told to a waiting `start -d`

    def _listen(self, master: Master) -> None:
        config = master.config
        if config.server.control_socket:
            self.control = ControlServer(
                config.control_path,
                {
                    "status": self._status,
                    "reload": self._reload,
                    "stop": self._stop,
                    "start": self._start,
                },
            )
            self.control.attach(master.selector)
        if config.metrics.listen:
            self.metrics = MetricsServer(config.metrics.listen, self._metrics, self._ready)
            self.metrics.attach(master.selector)
            logging.getLogger("aioworker.metrics").info(
                "metrics on %s (/metrics, /healthz, /readyz)", self.metrics.url
            )

    def before_spawn(self, master: Master, spec: WorkerSpec) -> None:
        if self.board is None:
            return
        name = spec.group.name
        try:
            spec.extra[SLOT_KEY] = self.board.claim(self._group_index.get(name, 0), name, spec.slot)
        except ScoreboardFull as exc:
            log.warning("%s: %s[%d] runs unobserved", exc, name, spec.slot)

    def worker_exited(self, master: Master, worker: Worker, reason: str) -> None:
        index = worker.extra.get(SLOT_KEY)
        if self.board is not None and index is not None:
            self.board.release(index)
        self.rss.pop(worker.pid, None)
        if worker.pid in self._timeouts:
            self._timeouts.discard(worker.pid)
            # The master counts it as "killed"; the watchdog knows it was a timeout.
            restarts = master.groups[worker.group].restarts
            if restarts.get("killed"):
                restarts["killed"] -= 1
                if not restarts["killed"]:
                    del restarts["killed"]
            restarts["timeout"] += 1

    def tick(self, master: Master, now: float) -> None:
        for server in (self.control, self.metrics):
            if server is not None:
                server.tick(now)
        if self.board is None:
            return
        sampled = None
        if now >= self._next_rss:
            self._next_rss = now + self.rss_interval
            sampled = {}
            for pid in master.workers:
                rss = read_rss(pid)
                if rss is not None:
                    sampled[pid] = rss
            self.rss = sampled
        limits = {name: Limits.of(g.settings) for name, g in master.groups.items()}
        for action in self.watchdog.check(self.board.snapshot(), limits, now, sampled):
            if action.pid not in master.workers:
                continue
            if action.kind == REFRESH:
                self._signal(action.pid, REFRESH_SIGNAL)
            elif action.kind == STACK:
                log.warning("%s", action.message)
                self._signal(action.pid, STACK_SIGNAL)
            elif action.kind == KILL:
                self._timeouts.add(action.pid)
                log.error("%s", action.message)
                master.kill_worker(action.pid, action.detail)
            elif action.kind == RECYCLE:
                worker = master.workers[action.pid]
                leaving = worker.recycle or ("stopping" if worker.stopping_since else "")
                if leaving:
                    # Replaced anyway (max_requests, a reload): not a memory restart.
                    s = action.sample
                    log.info(
                        "worker %d (%s[%d]) %s; already being replaced (%s)",
                        s.pid, s.group, s.slot, action.detail, leaving,
                    )  # fmt: skip
                    continue
                log.warning("%s", action.message)
                master.groups[action.sample.group].restarts["memory"] += 1
                master.recycle_worker(action.pid, action.detail)

    def master_stopped(self, master: Master) -> None:
        for server in (self.control, self.metrics):
            if server is not None:
                with contextlib.suppress(OSError):
                    server.close()
        self.control = self.metrics = None

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    # ------------------------------------------------------------------ answers

    def status(self) -> dict[str, Any]:
        """The status document (what `aioworker status --json` prints)."""
        assert self.master is not None
        samples = self.board.snapshot() if self.board is not None else []
        now = time.monotonic()
        rss = {pid: read_rss(pid) or 0 for pid in self.master.workers}
        return status_doc.build(
            self.master.status(), samples, now, rss, blocked_after=self.watchdog.blocked_after
        )

    def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    def _groups(self, args: dict[str, Any]) -> list[str] | None:
        """The command's "groups" (None: not given), every one of them known."""
        assert self.master is not None
        names = args.get("groups") or None
        if names is None:
            return None
        if not isinstance(names, list):
            raise CommandError('"groups" must be a list of group names')
        unknown = [str(n) for n in names if n not in self.master.groups]
        if unknown:
            raise CommandError(f"no group named {', '.join(unknown)}")
        return [str(n) for n in names]

    def _reload(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.master is not None
        return {"groups": self.master.reload(self._groups(args))}

    def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        """The master, or with "groups" only those groups (they drain; the rest goes on)."""
        assert self.master is not None
        names = self._groups(args)
        if names is not None:
            for name in names:
                self.master.set_count(name, 0)
            return {"groups": names}
        fast = bool(args.get("fast"))
        self.master.stop(fast=fast)
        return {"stopping": True, "fast": fast, "pid": self.master.pid}

    def _start(self, args: dict[str, Any]) -> dict[str, Any]:
        """Groups stopped with "stop" run their configured count of workers again."""
        assert self.master is not None
        names = self._groups(args)
        if names is None:
            raise CommandError('start needs "groups"')
        for name in names:
            self.master.set_count(name, self.master.groups[name].settings.workers)
        return {"groups": names}

    def _metrics(self) -> str:
        assert self.master is not None
        samples = self.board.snapshot() if self.board is not None else []
        return prometheus.render(
            self.master.status(),
            samples,
            time.monotonic(),
            self.board.buckets if self.board is not None else LATENCY_BUCKETS,
            self.rss,
            blocked_after=self.watchdog.blocked_after,
        )

    def _ready(self) -> tuple[bool, str]:
        assert self.master is not None
        return prometheus.readiness(self.master.status())

    # ------------------------------------------------------------------ worker side

    def worker_started(self, ctx: WorkerContext) -> None:
        index = ctx.spec.extra.get(SLOT_KEY)
        if self.board is None or index is None:
            return
        writer = self._writer = self.board.writer(index)
        # Before the first beat: the master signals only workers whose heartbeat started.
        install_stack_dump(sys.stderr, refresh=lambda: writer.update(beat=False))
        state = ctx.server.state if ctx.server is not None else None
        self._beat = start_heartbeat(ctx.loop, writer, state, self.heartbeat)
        writer.set_state(READY)

    def worker_draining(self, ctx: WorkerContext) -> None:
        if self._writer is not None:
            self._writer.set_state(DRAINING)
