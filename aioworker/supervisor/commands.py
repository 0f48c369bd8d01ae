"""The control socket's commands (status, reload, stop, start), answered from the master.

The master binds its control socket itself (``[server] control_socket``), so `reload`, `stop`
and `start` of single groups work whatever hooks are installed; `status` answers the master's
records, which hooks may enrich (`Hook.describe`: the scoreboard's figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aioworker.supervisor.control import Command, CommandError
from aioworker.supervisor.records import Group

__all__ = ["Commandable", "commands"]


class Commandable(Protocol):
    """The part of the master the commands drive."""

    @property
    def groups(self) -> dict[str, Group]: ...

    @property
    def pid(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...

    def reload(self, names: Sequence[str] | None = None) -> list[str]: ...

    @property
    def reload_problem(self) -> str: ...

    @property
    def reload_notes(self) -> list[str]: ...

    def stop(self, fast: bool = False) -> None: ...

    def set_count(self, name: str, count: int) -> None: ...


def commands(master: Commandable) -> dict[str, Command]:
    """The command table for `ControlServer`."""

    def group_names(args: dict[str, Any]) -> list[str] | None:
        """The command's "groups" (None: not given), every one of them known."""
        names = args.get("groups") or None
        if names is None:
            return None
        if not isinstance(names, list):
            raise CommandError('"groups" must be a list of group names')
        unknown = [str(n) for n in names if n not in master.groups]
        if unknown:
            raise CommandError(f"no group named {', '.join(unknown)}")
        return [str(n) for n in names]

    def status(args: dict[str, Any]) -> dict[str, Any]:
        return master.describe()

    def reload(args: dict[str, Any]) -> dict[str, Any]:
        """Start a rolling reload; the reply names each reloading group's new generation, the
        changes that need a restart (`notes`), or the reason nothing was reloaded (an error)."""
        names = master.reload(group_names(args))
        if master.reload_problem:
            raise CommandError(master.reload_problem)
        return {
            "groups": names,
            "generations": {name: master.groups[name].generation for name in names},
            "notes": master.reload_notes,
        }

    def reload_status(args: dict[str, Any]) -> dict[str, Any]:
        """Each named group's latest reload: its generation, `state` (reloading, reloaded,
        failed) and, when it failed, the reason the new workers could not start."""
        names = group_names(args) or list(master.groups)
        return {
            "groups": {
                name: {
                    "generation": master.groups[name].generation,
                    "state": master.groups[name].reload_state,
                    "error": master.groups[name].reload_error,
                }
                for name in names
            }
        }

    def stop(args: dict[str, Any]) -> dict[str, Any]:
        """The master, or with "groups" only those groups (they drain; the rest goes on)."""
        names = group_names(args)
        if names is not None:
            for name in names:
                master.set_count(name, 0)
            return {"groups": names}
        fast = bool(args.get("fast"))
        master.stop(fast=fast)
        return {"stopping": True, "fast": fast, "pid": master.pid}

    def start(args: dict[str, Any]) -> dict[str, Any]:
        """Groups stopped with "stop" run their configured count of workers again."""
        names = group_names(args)
        if names is None:
            raise CommandError('start needs "groups"')
        for name in names:
            master.set_count(name, master.groups[name].settings.workers)
        return {"groups": names}

    return {
        "status": status,
        "reload": reload,
        "reload_status": reload_status,
        "stop": stop,
        "start": start,
    }
