"""Where a group's new connections go: only to slots whose worker can serve them.

A mixin of Master, like `signals` and `children`. Each turn, for every group with per-slot
SO_REUSEPORT listeners, the master attaches a reuseport selector (`GroupSockets.steer`) that
sends new connections only to the slots `plan.accepting_slots` names: a worker there is
ready, not draining, and its loop turns (a hook marks it busy when its heartbeat stops:
blocked, or frozen by SIGSTOP). Connections the kernel had already queued on any other slot
(before the block was seen, or while the slot's worker restarts) are accepted by the master on
its own copy of that listener and handed to a turning worker of the group (`handover`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aioworker.supervisor import handover
from aioworker.supervisor import plan as planner
from aioworker.supervisor.records import Group, Worker

__all__ = ["Steering"]

log = logging.getLogger("aioworker.master")

# Connections moved to one worker per master turn (50 ms). Moving every queued connection to
# the first worker that frees up made it serve them one after another while its siblings,
# freed a moment later, found their queues empty: in the mixed-slow-work benchmark (4 workers,
# 10% of requests blocking 1 s) the short requests' p99 was 2.3x uvicorn's. A connection left
# queued is served by its own worker when it frees, or moved on a later turn.
MOVE_PER_TURN = 1


class Steering:
    """Mixin of Master: the reuseport selector, busy marks and moving queued connections."""

    if TYPE_CHECKING:  # provided by Master
        groups: dict[str, Group]
        workers: dict[int, Worker]
        stopping: bool

    def set_busy(self, pid: int, busy: bool) -> None:
        """Mark a worker whose loop stopped turning (or turns again): new connections go to
        its group's other slots meanwhile."""
        w = self.workers.get(pid)
        if w is not None and w.busy != busy:
            w.busy = busy
            if busy:
                self.groups[w.group].busy_episodes[w.slot] += 1
            # Debug: a task group's workers go busy on every slow request; what matters for
            # a steered group is logged as "new connections group=G slots=...".
            log.debug(
                "%s pid=%d group=%s slot=%d", "busy" if busy else "free", pid, w.group, w.slot
            )

    def _steer(self, wants: Sequence[planner.GroupWant]) -> None:
        """Point each group's new connections at its accepting slots, move what waits on the
        others, and close the per-slot listeners of removed slots."""
        if not any(g.sockets is not None and g.sockets.reuse_port for g in self.groups.values()):
            return  # shared sockets only (the default): nothing to steer, three times a turn
        infos = [w.info() for w in self.workers.values()]
        for want in wants:
            group = self.groups[want.name]
            sockets = group.sockets
            if sockets is None or not sockets.reuse_port:
                continue
            slots = planner.accepting_slots(want, infos)
            before = sockets.steered
            steered = not self.stopping and sockets.steer(slots)
            if steered and slots != before:
                log.info(
                    "new connections group=%s slots=%s",
                    want.name,
                    ",".join(map(str, slots)) or "any (none ready)",
                )
            if steered and slots:
                self._move_queued(group, slots, len(sockets.sockets))
            held = {w.slot for w in infos if w.group == want.name} if steered else set()
            # Steered, a removed slot gets no new connection, and its listener stays open
            # until its worker is gone: the kernel numbers a group's sockets in the order they
            # listen and closing one in the middle renumbers the last, so they are closed from
            # the top only. Not steered (no selector program), it is closed as soon as its
            # worker is told to stop, not when it exits: the kernel keeps routing new
            # connections to a listener while any copy of it is open, and nobody would accept
            # them during the drain.
            sockets.shrink(group.count, held)

    def _move_queued(self, group: Group, accepting: Sequence[int], listeners: int) -> None:
        """Hand connections queued on non-accepting slots to the accepting slots' workers, at
        most one to each per turn (`MOVE_PER_TURN`)."""
        assert group.sockets is not None
        targets = [
            w
            for w in self.workers.values()
            if w.group == group.name
            and w.slot in accepting
            and w.handover is not None
            and w.ready_at is not None
            and not w.stopping_since
            and not w.busy
        ]
        room = MOVE_PER_TURN * len(targets)
        for slot in range(listeners):
            if slot in accepting or room <= 0:
                continue
            connections = group.sockets.take_queued(slot, room)
            if not connections:
                continue
            room -= len(connections)
            moved = 0
            for connection in connections:
                target = targets.pop(0)
                targets.append(target)
                assert target.handover is not None
                moved += handover.send(target.handover, [connection])
                connection.close()  # the worker holds its own copy now
            group.moved[slot] += moved
            log.info(
                "moved %d queued connections group=%s slot=%d%s",
                moved,
                group.name,
                slot,
                "" if moved == len(connections) else f" ({len(connections) - moved} lost)",
            )
