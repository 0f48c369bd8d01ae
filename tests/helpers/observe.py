"""Helpers shared by the observability tests: forked children and scoreboard samples."""

from __future__ import annotations

import dataclasses
import os
import signal
import traceback
from collections.abc import Callable
from typing import Any

from aioworker.observe.scoreboard import WorkerSample

NOW = 5000.0
_children: list[int] = []


def fork(target: Callable[[], None]) -> int:
    """Run `target` in a forked child that always ends with os._exit (0 on success)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            target()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _children.append(pid)
    return pid


def reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return status


def kill_children() -> None:
    """Kill and reap every child `fork` started that is still there (after a failed test)."""
    while _children:
        pid = _children.pop()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def sample(pid: int, *, buckets: int = 15, **changes: Any) -> WorkerSample:
    """A scoreboard sample of a ready, idle worker of group web, changed as given."""
    base = WorkerSample(
        index=0,
        pid=pid,
        group_index=0,
        group="web",
        slot=0,
        state="ready",
        started_wall=0.0,
        started_mono=NOW - 100,
        heartbeat_mono=NOW - 0.05,
        requests=0,
        in_progress=0,
        connections=0,
        bytes_in=0,
        bytes_out=0,
        status_classes=(0,) * 6,
        latency_counts=(0,) * buckets,
        latency_sum=0.0,
        oldest=None,
    )
    return dataclasses.replace(base, **changes)
