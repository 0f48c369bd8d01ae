"""Waiting for what `reload`, `start -g` and `stop -g` asked the master, over its control socket.

The master answers a command at once and carries it out over the next seconds (a rolling
reload replaces one slot at a time); these functions ask it again until each group reached an
outcome, so the command's exit status tells the truth: 0 when every group did what was asked,
1 with the master's reason when one could not (the reload's new workers did not start, a
started group's workers exited before they were ready).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aioworker.config import Config

__all__ = ["Outcome", "Query", "bound", "wait_groups", "wait_reloaded"]

# How often the master is asked again: its own loop turns every 50 ms.
POLL = 0.1

Query = Callable[..., "dict[str, Any] | None"]


class Outcome:
    """Each group's result: done, or failed with the reason; `pending` are still going."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.pending = list(names)
        self.failed: dict[str, str] = {}

    @property
    def done(self) -> list[str]:
        """The groups that succeeded, in the order asked."""
        return [n for n in self.names if n not in self.pending and n not in self.failed]

    def settle(self, name: str, error: str | None) -> None:
        self.pending.remove(name)
        if error is not None:
            self.failed[name] = error


def bound(config: Config, names: list[str]) -> float:
    """Seconds to wait at most: each slot of a group may take start_timeout to become ready
    and graceful_timeout to drain, one slot after another."""
    longest = 0.0
    for group in config.groups:
        if group.name in names:
            per_slot = group.start_timeout + group.http.graceful_timeout
            longest = max(longest, group.workers * per_slot)
    return longest + 10.0


def _poll(
    query: Query,
    command: str,
    names: list[str],
    timeout: float,
    judge: Callable[[str, Mapping[str, Any]], tuple[bool, str | None]],
) -> Outcome:
    """Ask `command` until `judge(name, answer)` says each group is settled (True, error)."""
    outcome = Outcome(names)
    deadline = time.monotonic() + timeout
    while outcome.pending:
        answer = query(command, groups=list(outcome.pending))
        if answer is None:
            for name in list(outcome.pending):
                outcome.settle(name, "the master exited before it was done")
            break
        groups = answer["groups"]
        rows = groups if isinstance(groups, dict) else {g["name"]: g for g in groups}
        for name in list(outcome.pending):
            settled, error = judge(name, rows[name])
            if settled:
                outcome.settle(name, error)
        if outcome.pending:
            if time.monotonic() >= deadline:
                for name in list(outcome.pending):
                    outcome.settle(name, f"still not done after {timeout:g}s (see `status`)")
                break
            time.sleep(POLL)
    return outcome


def wait_reloaded(query: Query, generations: Mapping[str, int], timeout: float) -> Outcome:
    """Until each group's reload (of at least the given generation) completed or failed."""

    def judge(name: str, row: Mapping[str, Any]) -> tuple[bool, str | None]:
        if row["generation"] < generations[name]:
            return False, None
        if row["state"] == "reloaded":
            return True, None
        if row["state"] == "failed":
            return True, f"{row['error']}; the old workers keep serving"
        return False, None

    return _poll(query, "reload_status", list(generations), timeout, judge)


def wait_groups(
    query: Query, command: str, names: list[str], before: Mapping[str, Any], timeout: float
) -> Outcome:
    """After `start -g` (every worker ready) or `stop -g` (every worker gone). `before` is the
    `status` answer from before the command: a worker of a started group that exits on its
    own from then on fails the start, with the reason the master recorded."""
    crashes = {g["name"]: sum(g["restarts"].values()) for g in before["groups"]}

    def judge(name: str, row: Mapping[str, Any]) -> tuple[bool, str | None]:
        if command == "stop":
            return not row["workers"], None
        serving = [w for w in row["workers"] if w["state"] != "draining"]
        if len(serving) == row["ready"] == row["expected"] > 0:
            return True, None
        if sum(row["restarts"].values()) > crashes[name]:
            return True, row["last_exits"][-1] if row["last_exits"] else "a worker exited"
        return False, None

    return _poll(query, "status", names, timeout, judge)
