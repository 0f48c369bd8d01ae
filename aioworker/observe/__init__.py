"""Observe layer: scoreboard, watchdog, metrics and status, plugged into the master as a hook."""

from aioworker.observe.hook import Observability

__all__ = ["Observability"]
