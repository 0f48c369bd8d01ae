"""Which changes between two configurations a reload cannot apply, by the settings' `restart`.

``restart_needed(old, new)`` compares the running configuration with a re-read one and names
each key, dotted as in config.toml (``server.user``, ``groups.web.listen``, ``metrics.listen``),
whose change only a master restart applies: fields marked ``restart``, fields marked
``restart_if`` while that field is true in the running group, and groups added or removed
(``groups.NAME``). Pure: plain data in, a list out; the reload code logs what it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aioworker.config.loading import Config
from aioworker.config.settings import meta

__all__ = ["restart_needed"]


def restart_needed(old: Config, new: Config) -> list[str]:
    """The dotted keys whose change from `old` to `new` needs a master restart, in file order."""
    keys = _changed(old.server, new.server, "server")
    old_groups = {g.name: g for g in old.groups}
    new_groups = {g.name: g for g in new.groups}
    for name, group in new_groups.items():
        if name in old_groups:
            keys += _changed(old_groups[name], group, f"groups.{name}")
        else:
            keys.append(f"groups.{name}")
    keys += [f"groups.{name}" for name in old_groups if name not in new_groups]
    keys += _changed(old.metrics, new.metrics, "metrics")
    return keys


def _changed(old: Any, new: Any, prefix: str) -> list[str]:
    """Keys of one table (nested settings tables are written flat in it) that need a restart."""
    keys = []
    for f in dataclasses.fields(old):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        if dataclasses.is_dataclass(before):
            keys += _changed(before, after, prefix)
            continue
        m = meta(f)
        if m.restart or (m.restart_if and getattr(old, m.restart_if)):
            keys.append(f"{prefix}.{f.name}")
    return keys
