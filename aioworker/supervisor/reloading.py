"""Rolling reload in the master: re-read config.toml, apply what can change, bump generations.

The plan then replaces each reloaded group's workers one slot at a time (new worker ready
first, then the old one drains). Settings that need new listeners or a new master are kept
as they were and named in the log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aioworker.config import ConfigError, GroupSettings, ServerSettings, load

if TYPE_CHECKING:
    from aioworker.supervisor.master import Master

__all__ = ["RESTART_GROUP_KEYS", "RESTART_SERVER_KEYS", "check_done", "reload"]

log = logging.getLogger("aioworker.master")

# Changing these needs new listeners, a new master or privileges the master no longer has.
RESTART_GROUP_KEYS = ("listen", "reuse_port", "user", "group", "preload")
RESTART_SERVER_KEYS = ("pid_file", "control_socket", "log_file", "user", "group")


def reload(master: Master, names: Sequence[str] | None = None) -> list[str]:
    """Start a rolling reload of `names` (default: every reloadable group)."""
    if master.stopping:
        return []
    if master.config.path is not None:
        try:
            new = load(master.config.path)
        except ConfigError as exc:
            log.error("reload aborted, the running configuration is kept: %s", exc)
            return []
        _apply(master, new.server, new.groups)
    reloaded = []
    for name in names or list(master.groups):
        group = master.groups.get(name)
        if group is None:
            log.error("reload: no group named %r", name)
            continue
        if not group.settings.reloadable and not names:
            log.info("reload: group=%s is not reloadable; skipped", name)
            continue
        if group.settings.preload:
            log.warning(
                "reload: group=%s uses preload: new workers run the app imported at start; "
                "restart the master to load new code",
                name,
            )
        group.generation += 1
        group.reloading = True
        log.info("reloading group=%s generation=%d", name, group.generation)
        reloaded.append(name)
    return reloaded


def _apply(master: Master, server: ServerSettings, groups: Sequence[GroupSettings]) -> None:
    old_server = master.config.server
    for key in RESTART_SERVER_KEYS:
        if getattr(server, key) != getattr(old_server, key):
            log.warning("reload: server.%s changed: restart the master to apply it", key)
            server = dataclasses.replace(server, **{key: getattr(old_server, key)})
    if server.log_level != old_server.log_level:
        logging.getLogger().setLevel(server.log_level.upper())
        logging.getLogger("aioworker").setLevel(server.log_level.upper())
    seen = set()
    for settings in groups:
        seen.add(settings.name)
        group = master.groups.get(settings.name)
        if group is None:
            log.warning("reload: groups.%s is new: restart the master to start it", settings.name)
            continue
        old = group.settings
        keys = RESTART_GROUP_KEYS + (("app", "factory") if old.preload else ())
        for key in keys:
            if getattr(settings, key) != getattr(old, key):
                log.warning(
                    "reload: groups.%s.%s changed: restart the master to apply it",
                    settings.name,
                    key,
                )
                settings = dataclasses.replace(settings, **{key: getattr(old, key)})
        if settings.workers != old.workers:
            log.info(
                "reload: group=%s count %d -> %d", settings.name, group.count, settings.workers
            )
            group.count = settings.workers
        group.settings = settings
    for name in master.groups:
        if name not in seen:
            log.warning("reload: groups.%s was removed: restart the master to stop it", name)
    master.config = dataclasses.replace(
        master.config, server=server, groups=tuple(g.settings for g in master.groups.values())
    )


def check_done(master: Master) -> None:
    """Log `reloaded group=NAME` once every slot runs a ready worker of the new generation."""
    for group in master.groups.values():
        if not group.reloading:
            continue
        mine = [w for w in master.workers.values() if w.group == group.name]
        serving = [w for w in mine if not w.stopping_since]
        current = [w for w in serving if w.generation == group.generation and w.ready_at]
        if len(current) == group.count == len(serving):
            group.reloading = False
            pids = ",".join(str(w.pid) for w in sorted(current, key=lambda w: w.slot))
            log.info("reloaded group=%s generation=%d pids=%s", group.name, group.generation, pids)
