"""The master's records: a worker and a group as the master tracks them, and status as data."""

from __future__ import annotations

import collections
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aioworker.config import GroupSettings
from aioworker.sockets import GroupSockets
from aioworker.supervisor import plan as planner

__all__ = ["Group", "Worker", "status"]


@dataclass(slots=True)
class Worker:
    """One forked worker as the master tracks it."""

    pid: int
    group: str
    slot: int
    generation: int
    started: float
    pipe: int = -1  # read end of the worker's notify pipe (-1 once closed)
    ready_at: float | None = None
    stopping_since: float | None = None
    killed: bool = False
    recycle: str = ""
    cause: str = ""  # the restart counter a kill or recycle by the master goes to
    busy: bool = False  # a hook saw its loop stop turning: no new connections for it
    handover: socket.socket | None = None  # the master's end of its connection channel
    error: str = ""
    buffer: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)  # Hook.before_spawn's spec.extra

    def info(self) -> planner.WorkerInfo:
        return planner.WorkerInfo(
            self.pid,
            self.group,
            self.slot,
            self.generation,
            self.started,
            self.ready_at,
            self.stopping_since,
            self.killed,
            self.recycle,
            self.cause,
            self.busy,
        )


@dataclass(slots=True)
class Group:
    """A group's settings, listeners and counters in the running master."""

    settings: GroupSettings
    sockets: GroupSockets | None
    count: int
    generation: int = 0
    app: Any = None  # imported in the master when preload = true
    restarts: collections.Counter[str] = field(default_factory=collections.Counter)
    last_exits: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=10))
    reloading: bool = False
    # The outcome of the latest reload, for `aioworker reload` to wait on: "" (none yet),
    # "reloading", "reloaded" or "failed" (with the reason).
    reload_state: str = ""
    reload_error: str = ""
    # Times each slot's worker was seen blocked and taken out of the new-connection rotation.
    busy_episodes: collections.Counter[int] = field(default_factory=collections.Counter)
    # Connections the master took from a slot that could not accept them and handed over.
    moved: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def name(self) -> str:
        return self.settings.name


def status(
    pid: int,
    stopping: bool,
    groups: Mapping[str, Group],
    workers: Mapping[int, Worker],
    slots: Mapping[tuple[str, int], planner.SlotState],
    now: float,
) -> dict[str, Any]:
    """Plain data for `status`: groups, targets, workers, restarts and failures."""
    rows = []
    for g in groups.values():
        ws = [w for w in workers.values() if w.group == g.name]
        rows.append(
            {
                "name": g.name,
                "listen": g.sockets.url if g.sockets is not None else "",
                "expected": g.count,
                "ready": sum(1 for w in ws if w.ready_at is not None and not w.stopping_since),
                "failing": planner.group_failing(slots, g.name),
                "reloading": g.reloading,
                "restarts": dict(g.restarts),
                "last_exits": list(g.last_exits),
                # Slots new connections go to; None when the kernel chooses (shared socket,
                # unix socket, or no selector program attached).
                "accepting": (
                    list(g.sockets.steered)
                    if g.sockets is not None and g.sockets.steered is not None
                    else None
                ),
                "busy_episodes": {str(slot): n for slot, n in sorted(g.busy_episodes.items())},
                "moved": {str(slot): n for slot, n in sorted(g.moved.items())},
                "workers": [
                    {
                        "pid": w.pid,
                        "slot": w.slot,
                        "generation": w.generation,
                        "state": "draining"
                        if w.stopping_since
                        else ("ready" if w.ready_at is not None else "starting"),
                        "uptime": round(now - w.started, 3),
                        "busy": w.busy,
                    }
                    for w in sorted(ws, key=lambda w: (w.slot, w.started))
                ],
            }
        )
    return {"pid": pid, "stopping": stopping, "groups": rows}
