"""Command-line layer: `python -m aioworker start|stop|reload|status|check|serve|nginx`."""

from aioworker.cli.commands import main

__all__ = ["main"]
