"""A queue-fed group's numbers, read from Redis by the master for `status` and /metrics.

The numbers live in Redis, shared by every master using it: depth (waiting, not yet taken),
in progress (taken, not acknowledged: XPENDING), the age of the oldest unacknowledged job (its
stream entry id is its enqueue time in milliseconds, compared with Redis's own clock), and the
counters the consumers keep (completed, failed, redelivered; `cancelled` is counted in
``aioworker:stats:GROUP`` but not shown). The master has no event loop, so this uses the
blocking `SyncClient` with a 0.25 s timeout, and after a failure it does not try again for 2 s: a
`status` or a scrape while Redis is away costs the master at most one timeout per 2 s, and
shows the group's queue as unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aioworker.queue.broker import CONSUMERS, key
from aioworker.queue.resp import SyncClient

__all__ = ["QueueStats", "StatsReader"]

_TIMEOUT = 0.25
_QUIET_AFTER_FAILURE = 2.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue-fed group's numbers."""

    depth: int
    in_progress: int
    oldest_age: float
    completed: int
    failed: int
    redelivered: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_replies(length: Any, pending: Any, first: Any, counters: Any, now: Any) -> QueueStats:
    """The numbers from the replies to XLEN, XPENDING, XRANGE - + COUNT 1, HGETALL, TIME (an
    error reply, a missing stream for instance, counts as nothing)."""
    running = int(pending[0]) if isinstance(pending, list) and pending else 0
    total = length if isinstance(length, int) else 0
    oldest = 0.0
    if isinstance(first, list) and first:
        millis = int(first[0][0].split(b"-")[0])
        oldest = max(0.0, int(now[0]) + int(now[1]) / 1e6 - millis / 1000)
    pairs = zip(counters[0::2], counters[1::2], strict=True) if isinstance(counters, list) else ()
    counts = {k.decode(): int(v) for k, v in pairs}
    return QueueStats(
        depth=max(0, total - running),
        in_progress=running,
        oldest_age=round(oldest, 3),
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0),
        redelivered=counts.get("redelivered", 0),
    )


class StatsReader:
    """Reads the numbers of several groups in one round trip."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = SyncClient(url, timeout=_TIMEOUT)
        self._failed_at = -_QUIET_AFTER_FAILURE

    def read(self, groups: Sequence[str]) -> dict[str, QueueStats] | None:
        """group -> numbers, or None when Redis did not answer (now or in the last 2 s)."""
        now = time.monotonic()
        if not groups or now - self._failed_at < _QUIET_AFTER_FAILURE:
            return None if groups else {}
        commands: list[list[str | int]] = []
        for group in groups:
            stream = key("queue", group)
            commands += [
                ["XLEN", stream],
                ["XPENDING", stream, CONSUMERS],
                ["XRANGE", stream, "-", "+", "COUNT", 1],
                ["HGETALL", key("stats", group)],
                ["TIME"],
            ]
        try:
            replies = self.client.pipeline(commands)
        except OSError:
            self._failed_at = now
            return None
        return {group: from_replies(*replies[i * 5 : i * 5 + 5]) for i, group in enumerate(groups)}

    def close(self) -> None:
        self.client.close()
