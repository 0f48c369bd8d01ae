"""Supervision decisions as pure functions: desired groups + running workers + time -> actions.

Nothing here forks, signals or reads a clock: the master passes plain data in and carries the
actions out, so every rule (backoff, rolling reload, recycling, count changes, kill deadlines)
is tested with plain values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "FAILING_AFTER",
    "SPAWN_RETRY",
    "STABLE_AFTER",
    "GroupWant",
    "Kill",
    "Plan",
    "SlotState",
    "Spawn",
    "Stop",
    "WorkerInfo",
    "accepting_slots",
    "after_exit",
    "after_spawn_failure",
    "backoff_delay",
    "exit_cause",
    "exit_requested",
    "group_failing",
    "older_serves_slot",
    "plan",
    "reload_abandoned",
    "reload_complete",
    "reload_failed",
    "resized",
    "retry_now",
    "settle",
    "start_failed",
    "start_settled",
]

# A worker that stayed up this long after becoming ready resets its slot's backoff.
STABLE_AFTER = 5.0
# Delay before the Nth consecutive restart of a slot: 0 for the first, then doubling.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
# Least delay before retrying a slot whose fork failed: retrying at once would spin.
SPAWN_RETRY = 1.0
# Consecutive failures of one slot after which its group shows as failing.
FAILING_AFTER = 3


@dataclass(frozen=True, slots=True)
class GroupWant:
    """What a group should look like now."""

    name: str
    count: int  # workers wanted; 0 while stopping
    generation: int = 0  # bumped by each reload: older workers get replaced
    start_timeout: float = 60.0  # seconds a new worker may take to become ready
    stop_timeout: float = 35.0  # seconds a stopping worker may take before it is killed


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A running worker as the master sees it."""

    pid: int
    group: str
    slot: int
    generation: int = 0
    started: float = 0.0
    ready_at: float | None = None
    stopping_since: float | None = None  # when it was told to stop
    killed: bool = False
    recycle: str = ""  # why it should be replaced (max_requests, memory, ...); "" = keep
    cause: str = ""  # what the master killed or recycled it for ("timeout", "memory"), if anything
    busy: bool = False  # its loop is not turning (a hook saw the heartbeat stop): no new work

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def stopping(self) -> bool:
        return self.stopping_since is not None


@dataclass(frozen=True, slots=True)
class SlotState:
    """Restart bookkeeping of one slot of a group."""

    failures: int = 0  # consecutive exits of workers that did not stay up
    retry_at: float = 0.0  # no spawn before this time
    failed_generation: int = -1  # reload generation whose new worker never became ready
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Spawn:
    group: str
    slot: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Stop:
    pid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Kill:
    pid: int
    reason: str


Action = Spawn | Stop | Kill


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    wake_at: float | None  # the earliest time the plan may change without an event


SlotKey = tuple[str, int]


def backoff_delay(failures: int) -> float:
    """Seconds to wait before restarting a slot after `failures` consecutive failures."""
    if failures <= 1:
        return 0.0
    return min(BACKOFF_BASE * 2.0 ** (failures - 2), BACKOFF_MAX)


def exit_requested(worker: WorkerInfo) -> bool:
    """The master asked this worker to stop (a worker killed for never getting ready was not
    asked: that is a failed start)."""
    return worker.stopping and (worker.ready or not worker.killed)


def exit_cause(worker: WorkerInfo) -> str:
    """Which restart counter an unrequested exit goes to: `boot` (never ready), the cause the
    master killed it for (`timeout` from the watchdog, else `killed`), or `crash`."""
    if not worker.ready:
        return "boot"
    if worker.killed:
        return worker.cause or "killed"
    return "crash"


def reload_failed(worker: WorkerInfo, older_serves: bool) -> bool:
    """`worker` was a reload's replacement and died before it was ready: the reload of its
    group is abandoned and the older workers keep serving."""
    return older_serves and not worker.ready and not exit_requested(worker)


def reload_complete(want: GroupWant, workers: Iterable[WorkerInfo]) -> bool:
    """Every slot of the group runs a ready worker of the wanted generation, and nothing
    older still serves (draining workers are leaving and do not count)."""
    serving = [w for w in workers if w.group == want.name and not w.stopping]
    current = [w for w in serving if w.generation == want.generation and w.ready]
    return len(current) == want.count == len(serving)


def accepting_slots(want: GroupWant, workers: Iterable[WorkerInfo]) -> tuple[int, ...]:
    """The slots whose socket should get new connections: a worker there is ready, not
    stopping and not busy. Connections for other slots would wait in a queue nobody reads."""
    good = {
        w.slot
        for w in workers
        if w.group == want.name and w.ready and not w.stopping and not w.killed and not w.busy
    }
    return tuple(slot for slot in range(want.count) if slot in good)


def retry_now(state: SlotState) -> SlotState:
    """A reload asks for new code: a slot waiting out its backoff is tried again at once."""
    return dataclasses.replace(state, retry_at=0.0)


def resized(count: int, delta: int) -> int:
    """The default group's count after TTIN (+1) or TTOU (-1): never below one worker, since
    the default group answers every path no other group claims (stopping a whole group is an
    explicit `stop -g`, which may set 0)."""
    return max(1, count + delta)


def older_serves_slot(worker: WorkerInfo, others: Iterable[WorkerInfo]) -> bool:
    """An older generation still serves `worker`'s slot: `worker` was its reload replacement."""
    return any(
        o.group == worker.group
        and o.slot == worker.slot
        and o.generation < worker.generation
        and not o.stopping
        for o in others
    )


def after_exit(
    state: SlotState,
    worker: WorkerInfo,
    now: float,
    *,
    error: str = "",
    replaced_by_older: bool = False,
) -> SlotState:
    """The slot's state once `worker` exited; requested stops do not count as failures.

    `replaced_by_older`: an older worker still serves the slot, so this one was a reload
    replacement that died before it was ready; the reload of that generation is abandoned.
    """
    if exit_requested(worker):
        return state
    stable = worker.ready_at is not None and now - worker.ready_at >= STABLE_AFTER
    failures = 1 if stable else state.failures + 1
    failed_generation = state.failed_generation
    if replaced_by_older and not worker.ready:
        failed_generation = max(failed_generation, worker.generation)
    return SlotState(
        failures=failures,
        retry_at=now + backoff_delay(failures),
        failed_generation=failed_generation,
        last_error=error or state.last_error,
    )


def after_spawn_failure(state: SlotState, now: float, error: str) -> SlotState:
    """The slot's state when its worker could not even be forked (no memory, no descriptors,
    no listener): a failure like a crash, retried no sooner than in a second."""
    failures = state.failures + 1
    return dataclasses.replace(
        state,
        failures=failures,
        retry_at=now + max(backoff_delay(failures), SPAWN_RETRY),
        last_error=error,
    )


def settle(state: SlotState, workers: Iterable[WorkerInfo], now: float) -> SlotState:
    """Reset a slot's failure count once one of its workers has stayed up."""
    if state.failures and any(
        w.ready_at is not None and now - w.ready_at >= STABLE_AFTER and not w.stopping
        for w in workers
    ):
        return dataclasses.replace(state, failures=0, retry_at=0.0)
    return state


def group_failing(slots: Mapping[SlotKey, SlotState], group: str) -> bool:
    return any(k[0] == group and s.failures >= FAILING_AFTER for k, s in slots.items())


def reload_abandoned(want: GroupWant, slots: Mapping[SlotKey, SlotState]) -> bool:
    """A new worker of this reload failed to start: the remaining old ones are kept."""
    return any(
        k[0] == want.name and s.failed_generation >= want.generation for k, s in slots.items()
    )


def start_failed(
    want: GroupWant, workers: Sequence[WorkerInfo], slots: Mapping[SlotKey, SlotState]
) -> bool:
    """At first start: every slot has failed and no worker of the group is ready."""
    if want.count == 0 or any(w.group == want.name and w.ready for w in workers):
        return False
    return all(
        slots.get((want.name, slot), SlotState()).failures >= 1 for slot in range(want.count)
    )


def start_settled(
    want: GroupWant, workers: Sequence[WorkerInfo], slots: Mapping[SlotKey, SlotState]
) -> bool:
    """At first start: every slot of the group has a ready worker or has failed once."""
    return all(
        any(w.group == want.name and w.slot == slot and w.ready for w in workers)
        or slots.get((want.name, slot), SlotState()).failures > 0
        for slot in range(want.count)
    )


def plan(
    wants: Sequence[GroupWant],
    workers: Sequence[WorkerInfo],
    slots: Mapping[SlotKey, SlotState],
    now: float,
) -> Plan:
    """The actions that bring `workers` towards `wants` at time `now`."""
    actions: list[Action] = []
    wake: list[float] = []
    for want in wants:
        mine = [w for w in workers if w.group == want.name]
        _deadlines(want, mine, now, actions, wake)
        _replace(want, mine, slots, now, actions, wake)
    return Plan(tuple(actions), min(wake) if wake else None)


def _deadlines(
    want: GroupWant, mine: list[WorkerInfo], now: float, actions: list[Action], wake: list[float]
) -> None:
    for w in mine:
        if w.killed:
            continue
        if w.stopping_since is not None:
            deadline = w.stopping_since + want.stop_timeout
            if now >= deadline:
                actions.append(Kill(w.pid, f"still running {want.stop_timeout:g}s after stop"))
            else:
                wake.append(deadline)
        elif w.slot >= want.count:
            actions.append(Stop(w.pid, "stopping" if want.count == 0 else "count reduced"))
        elif not w.ready:
            deadline = w.started + want.start_timeout
            if now >= deadline:
                actions.append(Kill(w.pid, f"not ready after {want.start_timeout:g}s"))
            else:
                wake.append(deadline)


def _replace(
    want: GroupWant,
    mine: list[WorkerInfo],
    slots: Mapping[SlotKey, SlotState],
    now: float,
    actions: list[Action],
    wake: list[float],
) -> None:
    active = [w for w in mine if not w.stopping and not w.killed]
    abandoned = reload_abandoned(want, slots)

    def current(w: WorkerInfo) -> bool:
        return w.generation >= want.generation and not w.recycle

    # One slot at a time: a replacement still starting next to the worker it replaces.
    rolling = any(
        current(w) and not w.ready and any(o.slot == w.slot and not current(o) for o in active)
        for w in active
    )
    for slot in range(want.count):
        state = slots.get((want.name, slot), SlotState())
        here = [w for w in active if w.slot == slot]
        new = [w for w in here if current(w)]
        old = [w for w in here if not current(w)]
        if not here:
            if state.retry_at > now:
                wake.append(state.retry_at)
            else:
                actions.append(Spawn(want.name, slot, "start"))
            continue
        if not old:
            continue
        if any(w.ready for w in new):
            for w in old:
                actions.append(Stop(w.pid, w.recycle or "reload: replacement ready"))
            continue
        if new:
            continue  # its replacement is starting
        reloading = any(w.generation < want.generation for w in old)
        if reloading and abandoned:
            continue
        if rolling:
            continue
        if state.retry_at > now:
            wake.append(state.retry_at)
            continue
        reason = "reload" if reloading else f"recycle: {old[0].recycle}"
        actions.append(Spawn(want.name, slot, reason))
        rolling = True
