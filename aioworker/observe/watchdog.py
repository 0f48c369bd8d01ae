"""Watchdog: what to do about blocked or bloated workers, and how a blocked worker shows its stack.

The decisions are pure: ``Watchdog.check(samples, limits, now, rss)`` takes a scoreboard snapshot,
each group's limits, the monotonic time and fresh RSS samples, and returns actions for the master
to carry out (signals, logging, graceful recycling). Its only state is what it already did for
each pid, so the same block is never acted on twice.

For one blocked episode of a worker (its heartbeat stops advancing) the actions come in order:
``REFRESH`` at ``blocked_after`` or the first threshold (the worker copies its requests in
progress into its slot, so status and log lines show what it is stuck on; the next actions wait
for a later check), ``STACK`` once at ``soft_timeout`` (log the stack, no kill),
``STACK`` at ``timeout`` then ``KILL`` ``kill_grace`` seconds later (time for the stack to be
written). Memory: a READY worker whose RSS is above ``max_rss_mb`` for ``rss_samples`` consecutive
samples gets one ``RECYCLE`` (replacement first, then drain).

The mechanism, in the worker: ``install_stack_dump()`` registers ``faulthandler`` on
STACK_SIGNAL, which writes every thread's Python stack from the C signal handler, so it works while
the loop is blocked in ``time.sleep``, in pure-Python CPU work or in a C call, on uvloop as on
asyncio. It then chains to a Python handler that refreshes the slot; a Python handler runs between
bytecodes, so also inside a blocked app (not inside a long C call that never checks signals).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from aioworker.config import GroupSettings
from aioworker.observe.scoreboard import WorkerSample

__all__ = [
    "BLOCKED_AFTER",
    "KILL",
    "KILL_GRACE",
    "RECYCLE",
    "REFRESH",
    "REFRESH_SIGNAL",
    "REFRESH_WAIT",
    "RSS_SAMPLES",
    "STACK",
    "STACK_SIGNAL",
    "Action",
    "Limits",
    "Watchdog",
    "install_stack_dump",
    "read_rss",
]

# SIGUSR2 terminates a process that has no handler: the master sends it only to workers whose
# heartbeat has started, and the worker installs the dump before its first beat. SIGURG is
# ignored by default, so a refresh can never kill a worker.
STACK_SIGNAL = signal.SIGUSR2
REFRESH_SIGNAL = signal.SIGURG

REFRESH, STACK, KILL, RECYCLE = "refresh", "stack", "kill", "recycle"

# Internal constants, not settings (named once here; status and /metrics use BLOCKED_AFTER too).
BLOCKED_AFTER = 1.0  # seconds without a heartbeat (the beat is every 0.1 s) before "blocked"
KILL_GRACE = 1.0  # seconds between the stack dump at `timeout` and the kill: time to write it
RSS_SAMPLES = 3  # consecutive RSS samples above max_rss_mb before a recycle

_MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_GROUP = GroupSettings()  # Limits' defaults are the settings' defaults


@dataclass(frozen=True, slots=True)
class Limits:
    """A group's watchdog settings (GroupSettings.timeout, soft_timeout, max_rss_mb)."""

    timeout: float = _GROUP.timeout
    soft_timeout: float = _GROUP.soft_timeout
    max_rss_mb: int = _GROUP.max_rss_mb

    @classmethod
    def of(cls, group: GroupSettings) -> Limits:
        """From a group's settings."""
        return cls(float(group.timeout), float(group.soft_timeout), int(group.max_rss_mb))


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the master should do to one worker, with the reason for the log."""

    kind: str  # REFRESH, STACK, KILL or RECYCLE
    sample: WorkerSample
    reason: str  # "timeout", "soft_timeout", "blocked" or "memory": restart counters use it
    detail: str  # human text for the log line

    @property
    def pid(self) -> int:
        return self.sample.pid

    @property
    def message(self) -> str:
        """The log line: which worker, what is wrong, and what it was serving."""
        s = self.sample
        done = {KILL: "killed, ", RECYCLE: "recycled, "}.get(self.kind, "")
        text = f"worker {s.pid} ({s.group}[{s.slot}]) {done}{self.detail}"
        if s.oldest is not None and self.kind != RECYCLE:
            text += f"; serving {s.oldest.method} {s.oldest.path}"
        if self.kind == STACK:
            text += "; its Python stack follows"
        return text


# Seconds the stack and kill of a blocked worker wait for the refresh to show its request in
# progress in the slot (the worker's handler runs between bytecodes; on a loaded machine that
# may take a few of the master's 0.1 s ticks).
REFRESH_WAIT = 0.5


@dataclass(slots=True)
class _Episode:
    heartbeat: float
    refreshed: bool = False
    refreshed_at: float = 0.0
    soft_logged: bool = False
    dumped_at: float | None = None
    killed: bool = False


@dataclass(slots=True)
class Watchdog:
    """Per-pid memory of what was done; `check` turns a snapshot into actions."""

    blocked_after: float = BLOCKED_AFTER
    kill_grace: float = KILL_GRACE
    rss_samples: int = RSS_SAMPLES
    _episodes: dict[int, _Episode] = field(default_factory=dict)
    _over: dict[int, int] = field(default_factory=dict)
    _recycled: set[int] = field(default_factory=set)

    def check(
        self,
        samples: Iterable[WorkerSample],
        limits: Mapping[str, Limits],
        now: float,
        rss: Mapping[int, int] | None = None,
    ) -> list[Action]:
        """Actions due at monotonic time `now`; pass `rss` (pid -> bytes) only when sampled."""
        actions: list[Action] = []
        seen = set()
        for sample in samples:
            if not sample.pid or sample.state == "empty":
                continue
            seen.add(sample.pid)
            limit = limits.get(sample.group, Limits())
            self._blocked(sample, limit, now, actions)
            if rss is not None and sample.pid in rss:
                self._memory(sample, limit, rss[sample.pid], actions)
        for table in (self._episodes, self._over):
            for pid in [pid for pid in table if pid not in seen]:
                del table[pid]
        self._recycled &= seen
        return actions

    def _blocked(self, s: WorkerSample, limit: Limits, now: float, out: list[Action]) -> None:
        age = s.heartbeat_age(now)
        if age is None:
            return
        episode = self._episodes.get(s.pid)
        if episode is None or episode.heartbeat != s.heartbeat_mono:
            episode = self._episodes[s.pid] = _Episode(s.heartbeat_mono)
        thresholds = [t for t in (self.blocked_after, limit.soft_timeout, limit.timeout) if t > 0]
        if age < min(thresholds):
            return
        if not episode.refreshed:
            episode.refreshed, episode.refreshed_at = True, now
            out.append(Action(REFRESH, s, "blocked", f"event loop blocked for {age:.1f} s"))
            # The stack and kill wait for a later check, whose snapshot then holds the
            # request the refresh wrote: the log line can say what the worker is serving.
            return
        if s.oldest is None and now - episode.refreshed_at < REFRESH_WAIT:
            return  # the refresh has not reached the slot yet
        if limit.timeout and age >= limit.timeout:
            if episode.dumped_at is None:
                episode.dumped_at = now
                detail = f"event loop blocked for {age:.1f} s (timeout {limit.timeout:g} s)"
                out.append(Action(STACK, s, "timeout", detail))
            elif not episode.killed and now - episode.dumped_at >= self.kill_grace:
                episode.killed = True
                detail = f"event loop blocked for {age:.1f} s (timeout {limit.timeout:g} s)"
                out.append(Action(KILL, s, "timeout", detail))
        elif limit.soft_timeout and age >= limit.soft_timeout and not episode.soft_logged:
            episode.soft_logged = True
            detail = f"event loop blocked for {age:.1f} s (soft_timeout {limit.soft_timeout:g} s)"
            out.append(Action(STACK, s, "soft_timeout", detail))

    def _memory(self, s: WorkerSample, limit: Limits, rss: int, out: list[Action]) -> None:
        if not limit.max_rss_mb or s.state != "ready" or s.pid in self._recycled:
            return
        if rss <= limit.max_rss_mb * _MIB:
            self._over[s.pid] = 0
            return
        count = self._over[s.pid] = self._over.get(s.pid, 0) + 1
        if count >= self.rss_samples:
            self._recycled.add(s.pid)
            detail = (
                f"uses {rss / _MIB:.0f} MiB, above max_rss_mb {limit.max_rss_mb} for "
                f"{count} samples"
            )
            out.append(Action(RECYCLE, s, "memory", detail))


def read_rss(pid: int) -> int | None:
    """Resident memory of `pid` in bytes from /proc/PID/statm; None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def install_stack_dump(
    file: TextIO | int = sys.stderr, refresh: Callable[[], None] | None = None
) -> None:
    """In a worker: STACK_SIGNAL dumps every thread's stack to `file`, then calls `refresh`;
    REFRESH_SIGNAL only calls `refresh` (e.g. ``lambda: writer.update(beat=False)``).

    Install before the heartbeat starts. `file` must stay open (faulthandler keeps its fd).
    """

    def handler(signum: int, frame: object) -> None:
        if refresh is not None:
            refresh()

    # The Python handler goes first: faulthandler chains to the handler it replaces.
    signal.signal(STACK_SIGNAL, handler)
    signal.signal(REFRESH_SIGNAL, handler)
    faulthandler.register(STACK_SIGNAL, file=file, all_threads=True, chain=True)
