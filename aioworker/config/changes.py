"""Which changes between two configurations a reload cannot apply, by the settings' `restart`.

``restart_needed(old, new)`` compares the running configuration with a re-read one and names
each key, dotted as in config.toml (``server.user``, ``groups.web.listen``, ``metrics.listen``),
whose change only a master restart applies: fields marked ``restart``, fields marked
``restart_if`` while that field is true in the running group, and groups added or removed
(``groups.NAME``). Pure: plain data in, a list out; the reload code logs what it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from aioworker.config.loading import Config
from aioworker.config.settings import meta

__all__ = ["keep_running", "restart_needed"]

T = TypeVar("T")


def restart_needed(old: Config, new: Config) -> list[str]:
    """The dotted keys whose change from `old` to `new` needs a master restart, in file order."""
    keys = keep_running(old.server, new.server, "server")[1]
    old_groups = {g.name: g for g in old.groups}
    new_groups = {g.name: g for g in new.groups}
    for name, group in new_groups.items():
        if name in old_groups:
            keys += keep_running(old_groups[name], group, f"groups.{name}")[1]
        else:
            keys.append(f"groups.{name}")
    keys += [f"groups.{name}" for name in old_groups if name not in new_groups]
    keys += keep_running(old.metrics, new.metrics, "metrics")[1]
    return keys


def keep_running(old: T, new: T, prefix: str) -> tuple[T, list[str]]:
    """One table as a reload runs it: `new`, with each change that needs a restart put back
    to `old`'s value; and those keys (nested settings tables are written flat in it)."""
    keys: list[str] = []
    kept: dict[str, Any] = {}
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        if dataclasses.is_dataclass(before):
            merged, inner = keep_running(before, after, prefix)
            keys += inner
            if inner:
                kept[f.name] = merged
            continue
        m = meta(f)
        if m.restart or (m.restart_if and getattr(old, m.restart_if)):
            keys.append(f"{prefix}.{f.name}")
            kept[f.name] = before
    return (dataclasses.replace(new, **kept) if kept else new), keys  # type: ignore[type-var]
