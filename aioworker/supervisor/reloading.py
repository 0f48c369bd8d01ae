"""Rolling reload: which configuration a reload runs, which groups it bumps, and when it is done.

`reconcile` decides what a re-read config.toml may change in a running master: settings marked
`restart` in `aioworker.config.settings` (new listeners, a new master, privileges the master
no longer has) keep their running value and are named in the log, key by key. `bump` starts
the reload of groups by raising their generation; the plan then replaces each group's workers
one slot at a time (new worker ready first, then the old one drains). Both are plain
functions of plain data; `Reloading`, a mixin of Master, carries them out (and re-applies the
log level and log file, `[metrics]` through the hooks, and `watch`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aioworker import logs
from aioworker.config import Config, ConfigError, GroupSettings, keep_running, load
from aioworker.supervisor import plan as planner
from aioworker.supervisor.paths import unsafe_location
from aioworker.supervisor.records import Group, Worker
from aioworker.supervisor.watch import PollingWatcher, ThreadWatcher, make_watcher

__all__ = ["Bumped", "Reconciled", "Reloading", "bump", "reconcile"]

log = logging.getLogger("aioworker.master")


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


def _switch_log_file(old: Config, new: Config) -> Config:
    """Write the log to `new`'s log_file from now on; if that cannot be done, say why and keep
    the running file (and its key in the returned config, so the next reload tries again)."""
    running = logs.in_file()
    if not running:
        log.info("reload: server.log_file is used in daemon mode (-d) only")
        return new
    path = new.resolve(new.server.log_file) if new.server.log_file else None
    problem = unsafe_location(path) if path is not None else "empty: the log would be lost"
    if path is not None and not problem:
        log.info("reload: the log continues in %s", path)
        try:
            logs.redirect_to_file(str(path))
        except OSError as exc:
            problem = f"cannot open {path}: {exc.strerror}"
        else:
            log.info("reload: logging to %s (before: %s)", path, running)
            return new
    log.error("reload: server.log_file: %s; still logging to %s", problem, running)
    return dataclasses.replace(
        new, server=dataclasses.replace(new.server, log_file=old.server.log_file)
    )


class Reloading:
    """Mixin of Master: `reload()` (HUP, the control socket, a watched file change) applies the
    re-read config.toml and bumps generations; each turn it logs the reloads that completed."""

    # What the latest reload() could not do: the config it could not read (nothing reloaded),
    # and the changes it could not apply (each one needs a restart).
    reload_problem: str = ""
    reload_notes: list[str] = []  # noqa: RUF012 - replaced, never mutated, by reload()

    if TYPE_CHECKING:  # provided by Master
        config: Config
        groups: dict[str, Group]
        workers: dict[int, Worker]
        slots: dict[tuple[str, int], planner.SlotState]
        stopping: bool
        _watch_paths: list[str]
        _watcher: PollingWatcher | ThreadWatcher | None

        def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...
        def remove_reader(self, fd: int) -> None: ...
        def _wants(self) -> list[planner.GroupWant]: ...
        def _call_hooks(self, name: str, *args: Any) -> None: ...

    def reload(self, names: Sequence[str] | None = None) -> list[str]:
        """Rolling reload of the named (default: every reloadable) groups; returns their names.

        config.toml is read again first: what a reload can apply is applied to every group
        (counts, limits, log level, [metrics], watch), the rest is logged key by key."""
        self.reload_problem = ""
        self.reload_notes = []
        if self.stopping:
            self.reload_problem = "the master is stopping"
            return []
        if self.config.path is not None:
            try:
                new = load(self.config.path)
            except ConfigError as exc:
                log.error("reload aborted, the running configuration is kept: %s", exc)
                self.reload_problem = f"reload aborted, the running configuration is kept: {exc}"
                return []
            self._apply(reconcile(self.config, new))
        bumped = bump(self.groups, names)
        for name in bumped.unknown:
            log.error("reload: no group named %r", name)
        for name in bumped.skipped:
            log.info("reload: group=%s is not reloadable; skipped", name)
        for name in bumped.reloaded:
            group = self.groups[name]
            if group.settings.preload:
                log.warning(
                    "reload: group=%s uses preload: new workers run the app imported at start; "
                    "restart the master to load new code",
                    name,
                )
            log.info("reloading group=%s generation=%d", name, group.generation)
            group.reload_state, group.reload_error = "reloading", ""
            for key, state in self.slots.items():
                if key[0] == name:  # new code may fix what kept failing: no backoff wait
                    self.slots[key] = planner.retry_now(state)
        return list(bumped.reloaded)

    def _apply(self, reconciled: Reconciled) -> None:
        notes = [
            f"{key} changed: restart the master to apply it" for key in reconciled.needs_restart
        ]
        notes += [
            f"groups.{name} is new: restart the master to start it" for name in reconciled.added
        ]
        notes += [
            f"groups.{name} was removed: restart the master to stop it"
            for name in reconciled.removed
        ]
        for note in notes:
            log.warning("reload: %s", note)
        self.reload_notes = notes
        old, new = self.config, reconciled.config
        if new.server.log_file != old.server.log_file:
            new = _switch_log_file(old, new)
        if new.server.log_level != old.server.log_level:
            logging.getLogger().setLevel(new.server.log_level.upper())
            logging.getLogger("aioworker").setLevel(new.server.log_level.upper())
        for settings in new.groups:
            group = self.groups[settings.name]
            if settings.workers != group.settings.workers:
                log.info(
                    "reload: group=%s count %d -> %d", settings.name, group.count, settings.workers
                )
                group.count = settings.workers
            group.settings = settings
        self.config = new
        if new.server.watch != old.server.watch and not self._watch_paths:
            self._start_watching()
        self._call_hooks("config_reloaded", self, old)

    def _start_watching(self) -> None:
        """Watch `start --watch` paths, else `[server] watch` (again after a reload)."""
        if self._watcher is not None:
            if self._watcher.fileno is not None:
                self.remove_reader(self._watcher.fileno)
            self._watcher.close()
            self._watcher = None
        paths = self._watch_paths or list(self.config.server.watch)
        if paths:
            self._watcher = make_watcher([self.config.resolve(p) for p in paths])
            if self._watcher.fileno is not None:
                self.add_reader(self._watcher.fileno, self._check_watch)

    def _check_reloaded(self) -> None:
        # Wants of now, not of the turn's start: a HUP in this turn bumped the generation.
        infos = [w.info() for w in self.workers.values()]
        for want in self._wants():
            group = self.groups[want.name]
            if group.reloading and not self.stopping and planner.reload_complete(want, infos):
                group.reloading = False
                group.reload_state = "reloaded"
                pids = ",".join(
                    str(w.pid)
                    for w in sorted(self.workers.values(), key=lambda w: w.slot)
                    if w.group == group.name and not w.stopping_since
                )
                log.info(
                    "reloaded group=%s generation=%d pids=%s", group.name, group.generation, pids
                )

    def _check_watch(self) -> None:
        if self._watcher is None or self.stopping:
            return
        changed = self._watcher.changed()
        if changed:
            log.info("changed: %s; reloading", ", ".join(changed[:5]))
            self.reload()
