"""Queue-fed groups in `status` and /metrics: their numbers, read from Redis by the master.

`QueueNumbers` is made from the config; with no queue-fed group it does nothing and never
imports redis. `status --json` gets a ``queue`` object in each queue-fed group (``reachable``
false when Redis did not answer); /metrics gets one family per number, labelled by group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aioworker.config import Config

__all__ = ["QueueNumbers", "render_metrics"]

# (family, kind, help, QueueStats field)
_FAMILIES = (
    ("aioworker_queue_depth", "gauge", "Jobs waiting for a worker.", "depth"),
    ("aioworker_queue_oldest_age_seconds", "gauge", "Age of the oldest unacknowledged job.",
     "oldest_age"),
    ("aioworker_queue_in_progress", "gauge", "Jobs taken by a worker, not yet done.",
     "in_progress"),
    ("aioworker_queue_completed_total", "counter", "Jobs answered.", "completed"),
    ("aioworker_queue_failed_total", "counter", "Jobs that failed for good.", "failed"),
    ("aioworker_queue_redelivered_total", "counter",
     "Jobs claimed again after their worker went silent.", "redelivered"),
)  # fmt: skip


class QueueNumbers:
    """The master's reader of its queue-fed groups' numbers."""

    def __init__(self, config: Config) -> None:
        self.groups = [g.name for g in config.groups if g.queue]
        self._reader: Any = None
        if self.groups and config.queue.url:
            from aioworker.queue.stats import StatsReader

            self._reader = StatsReader(config.queue.url)

    def read(self) -> dict[str, dict[str, Any]]:
        """group -> its numbers as a dict with ``reachable``; {} without queue-fed groups."""
        if self._reader is None:
            return {}
        found = self._reader.read(self.groups)
        if found is None:
            return {name: {"reachable": False} for name in self.groups}
        return {name: {"reachable": True, **found[name].as_dict()} for name in self.groups}

    def add_to_status(self, doc: dict[str, Any]) -> dict[str, Any]:
        numbers = self.read()
        for group in doc.get("groups", []):
            if group.get("name") in numbers:
                group["queue"] = numbers[group["name"]]
        return doc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def render_metrics(numbers: Mapping[str, Mapping[str, Any]]) -> str:
    """The Prometheus text of the numbers (groups whose Redis did not answer are left out,
    and `aioworker_queue_reachable` says so)."""
    if not numbers:
        return ""
    lines = [
        "# HELP aioworker_queue_reachable 1 when the group's Redis answered.",
        "# TYPE aioworker_queue_reachable gauge",
    ]
    lines += [
        f'aioworker_queue_reachable{{group="{name}"}} {int(bool(n.get("reachable")))}'
        for name, n in numbers.items()
    ]
    for family, kind, text, field in _FAMILIES:
        lines += [f"# HELP {family} {text}", f"# TYPE {family} {kind}"]
        lines += [
            f'{family}{{group="{name}"}} {n[field]}'
            for name, n in numbers.items()
            if n.get("reachable")
        ]
    return "\n".join(lines) + "\n"
