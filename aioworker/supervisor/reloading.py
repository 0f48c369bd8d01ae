"""Rolling reload, as plain functions: which configuration a reload runs, which groups it bumps.

`reconcile` decides what a re-read config.toml may change in a running master: settings marked
`restart` in `aioworker.config.settings` (new listeners, a new master, privileges the master
no longer has) keep their running value and are named in the log, key by key. `bump` starts
the reload of groups by raising their generation; the plan then replaces each group's workers
one slot at a time (new worker ready first, then the old one drains).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from aioworker.config import Config, GroupSettings, keep_running
from aioworker.supervisor.records import Group

__all__ = ["Bumped", "Reconciled", "bump", "reconcile"]


@dataclasses.dataclass(frozen=True, slots=True)
class Reconciled:
    """The configuration a reload runs, and what it could not apply."""

    config: Config
    needs_restart: tuple[str, ...]  # dotted keys kept at their running value
    added: tuple[str, ...]  # groups in the file the master does not run
    removed: tuple[str, ...]  # groups the master runs that left the file


def reconcile(running: Config, new: Config) -> Reconciled:
    """`new` with every change a reload cannot apply (the settings marked `restart`) reverted
    to `running`'s value; groups added or removed wait for a restart too."""
    server, kept = keep_running(running.server, new.server, "server")
    fresh = {g.name: g for g in new.groups}
    groups: list[GroupSettings] = []
    for old in running.groups:
        settings, keys = keep_running(old, fresh.get(old.name, old), f"groups.{old.name}")
        groups.append(settings)
        kept += keys
    metrics, keys = keep_running(running.metrics, new.metrics, "metrics")
    running_names = {g.name for g in running.groups}
    return Reconciled(
        dataclasses.replace(
            new, server=server, groups=tuple(groups), metrics=metrics, path=running.path
        ),
        tuple(kept + keys),
        tuple(name for name in fresh if name not in running_names),
        tuple(name for name in running_names if name not in fresh),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Bumped:
    """What `bump` did with each name."""

    reloaded: tuple[str, ...]
    skipped: tuple[str, ...]  # not reloadable (named groups are reloaded regardless)
    unknown: tuple[str, ...]


def bump(groups: Mapping[str, Group], names: Sequence[str] | None) -> Bumped:
    """Start the reload of `names` (default: every reloadable group) by raising each one's
    generation."""
    reloaded, skipped, unknown = [], [], []
    for name in names or list(groups):
        group = groups.get(name)
        if group is None:
            unknown.append(name)
        elif not group.settings.reloadable and not names:
            skipped.append(name)
        else:
            group.generation += 1
            group.reloading = True
            reloaded.append(name)
    return Bumped(tuple(reloaded), tuple(skipped), tuple(unknown))
