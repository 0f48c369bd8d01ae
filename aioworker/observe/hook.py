"""Observability as a master hook: scoreboard, watchdog, metrics and health, richer status.

``Observability()`` plugs into the master (``aioworker.run(config)`` installs it) through the
hook points of ``aioworker.supervisor.hooks``:

- master_started: map the scoreboard (before the first fork) and bind the metrics listener
  (``[metrics] listen``) on the master's selector; when it cannot be bound, the master stops
  with exit code 1; config_reloaded moves it when a reload changed ``[metrics] listen``;
- describe: the control socket's ``status`` joins the master's records with the scoreboard;
- before_spawn / worker_exited: claim a scoreboard slot for each new process, release it after
  the reap;
- worker_started (in the worker, on its loop): install the stack dump, start the heartbeat that
  copies ``server.state`` into the slot, mark it ready; worker_draining marks it draining;
- tick (every master loop turn): enforce client deadlines, sample RSS once a second, run the
  watchdog and hand its actions to the master (signals, kill, graceful recycle), which alone
  signals workers.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

from aioworker.config import Config
from aioworker.http.counters import LATENCY_BUCKETS
from aioworker.observe import metrics as prometheus
from aioworker.observe import status as status_doc
from aioworker.observe.metrics import MetricsServer
from aioworker.observe.queues import QueueNumbers, render_metrics
from aioworker.observe.scoreboard import (
    BUSY_AFTER,
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
from aioworker.supervisor.hooks import Hook, MasterControl, WorkerContext, WorkerSpec
from aioworker.supervisor.records import Worker

__all__ = ["Observability"]

log = logging.getLogger("aioworker.watchdog")
metrics_log = logging.getLogger("aioworker.metrics")

SLOT_KEY = "scoreboard"


class Observability(Hook):
    """Everything of the observability issue, wired through the master's hook points."""

    def __init__(
        self,
        *,
        heartbeat: float = HEARTBEAT_INTERVAL,
        busy_after: float = BUSY_AFTER,
        blocked_after: float = BLOCKED_AFTER,
        kill_grace: float = KILL_GRACE,
        rss_interval: float = 1.0,
        rss_samples: int = RSS_SAMPLES,
        spare_slots: int = 16,
    ) -> None:
        self.heartbeat = heartbeat
        self.busy_after = busy_after
        self.rss_interval = rss_interval
        self.spare_slots = spare_slots
        self.watchdog = Watchdog(blocked_after, kill_grace, rss_samples)
        self.board: Scoreboard | None = None
        self.metrics: MetricsServer | None = None
        self.master: MasterControl | None = None
        self.rss: dict[int, int] = {}
        self._next_rss = 0.0
        self._group_index: dict[str, int] = {}
        self.queues: QueueNumbers | None = None
        # In the worker only:
        self._writer: SlotWriter | None = None
        self._beat: Heartbeat | None = None

    # ------------------------------------------------------------------ master side

    def master_started(self, master: MasterControl) -> None:
        mine = [h for h in master.hooks if isinstance(h, Observability)]
        if mine and mine[-1] is not self:
            # The default hook and one passed with run(hooks=...): the last one given wins,
            # the others stay inert (no board, no sockets), so nothing is done twice.
            return
        self.master = master
        self._group_index = {name: i for i, name in enumerate(master.groups)}
        self.queues = QueueNumbers(master.config)
        # Room for every worker twice (a rolling reload overlaps old and new) plus TTIN.
        capacity = 2 * sum(g.count for g in master.groups.values()) + self.spare_slots
        self.board = Scoreboard.create(capacity, LATENCY_BUCKETS)
        if master.config.metrics.listen:
            try:
                self.metrics = self._serve_metrics(master, master.config.metrics.listen)
            except OSError as exc:  # BindError is an OSError
                # A master asked for metrics must not run without them (a readiness probe
                # would never pass): fail like a group whose port is taken.
                master.abort_start(str(exc))  # logged, and told to a waiting `start -d`

    def _serve_metrics(self, master: MasterControl, listen: str) -> MetricsServer:
        server = MetricsServer(listen, self._metrics, self._ready)
        server.attach(master.selector)
        metrics_log.info("metrics on %s (/metrics, /healthz, /readyz)", server.url)
        return server

    def config_reloaded(self, master: MasterControl, old: Config) -> None:
        """Move the metrics endpoint when `[metrics] listen` changed: the new listener is
        bound first, so a failure keeps the old one serving."""
        if self.master is master:
            if self.queues is not None:
                self.queues.close()
            self.queues = QueueNumbers(master.config)
        listen = master.config.metrics.listen
        serving = self.metrics.listen if self.metrics is not None else ""
        if self.master is not master or listen == serving:
            return
        try:
            server = self._serve_metrics(master, listen) if listen else None
        except OSError as exc:
            metrics_log.error("reload: metrics.listen: %s; still on %s", exc, serving or "nothing")
            return
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.close()
        if server is None:
            metrics_log.info("metrics off")
        self.metrics = server

    def before_spawn(self, master: MasterControl, spec: WorkerSpec) -> None:
        if self.board is None:
            return
        name = spec.group.name
        try:
            spec.extra[SLOT_KEY] = self.board.claim(self._group_index.get(name, 0), name, spec.slot)
        except ScoreboardFull as exc:
            log.warning("%s: %s[%d] runs unobserved", exc, name, spec.slot)

    def worker_exited(self, master: MasterControl, worker: Worker, reason: str) -> None:
        index = worker.extra.get(SLOT_KEY)
        if self.board is not None and index is not None:
            self.board.release(index)
        self.rss.pop(worker.pid, None)

    def tick(self, master: MasterControl, now: float) -> None:
        if self.metrics is not None:
            self.metrics.tick(now)
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
        samples = self.board.snapshot()
        for sample in samples:
            # A loop that has not beaten for a few heartbeats is blocked (or frozen): its
            # slot gets no new connections until it turns again.
            age = sample.heartbeat_age(now)
            if sample.pid in master.workers and age is not None:
                master.set_busy(sample.pid, age >= self.busy_after)
        limits = {name: Limits.of(g.settings) for name, g in master.groups.items()}
        for action in self.watchdog.check(samples, limits, now, sampled):
            if action.pid not in master.workers:
                continue
            if action.kind == REFRESH:
                master.signal_worker(action.pid, REFRESH_SIGNAL)
            elif action.kind == STACK:
                log.warning("%s", action.message)
                master.signal_worker(action.pid, STACK_SIGNAL)
            elif action.kind == KILL:
                log.error("%s", action.message)
                master.kill_worker(action.pid, action.detail, cause="timeout")
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
                master.recycle_worker(action.pid, action.detail, cause="memory")

    def master_stopped(self, master: MasterControl) -> None:
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                self.metrics.close()
        self.metrics = None

    # ------------------------------------------------------------------ answers

    def describe(self, master: MasterControl, status: dict[str, Any]) -> dict[str, Any]:
        """The status document (what `aioworker status --json` prints): the master's records
        joined with each worker's scoreboard slot and RSS."""
        if self.master is not master:
            return status
        samples = self.board.snapshot() if self.board is not None else []
        rss = {pid: read_rss(pid) or 0 for pid in master.workers}
        doc = status_doc.build(
            status, samples, time.monotonic(), rss, blocked_after=self.watchdog.blocked_after
        )
        return self.queues.add_to_status(doc) if self.queues is not None else doc

    def _metrics(self) -> str:
        assert self.master is not None
        samples = self.board.snapshot() if self.board is not None else []
        text = prometheus.render(
            self.master.status(),
            samples,
            time.monotonic(),
            self.board.buckets if self.board is not None else LATENCY_BUCKETS,
            self.rss,
            blocked_after=self.watchdog.blocked_after,
        )
        return text + (render_metrics(self.queues.read()) if self.queues is not None else "")

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
