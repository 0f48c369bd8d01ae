"""`check`: import every group's app and verify its user and group, before anything starts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from aioworker.config import Config, GroupSettings
from aioworker.importer import describe_error, import_from_string
from aioworker.supervisor.process import become_worker, resolve_ids

__all__ = ["check_apps", "check_apps_isolated", "check_ids", "summary"]


def check_apps(config: Config) -> list[str]:
    """Import every group's app in this process; one `file: table.key: problem` per failure."""
    return _import_problems(config, config.groups) + check_ids(config)


def _import_problems(config: Config, groups: Sequence[GroupSettings]) -> list[str]:
    where = str(config.path) if config.path is not None else "<config>"
    base = str(config.base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    problems = []
    for group in groups:
        key = "main" if group.main else "app"
        target = group.main or group.app
        try:
            obj = import_from_string(target)
        except Exception as exc:
            problems.append(
                f"{where}: groups.{group.name}.{key}: cannot import {target}: "
                + describe_error(exc)
            )
            continue
        if not callable(obj):
            problems.append(f"{where}: groups.{group.name}.{key}: {target} is not callable")
    return problems


def check_ids(config: Config) -> list[str]:
    """Every group's user and group must exist: `file: groups.NAME.user: no such user`."""
    where = str(config.path) if config.path is not None else "<config>"
    problems = []
    for group in config.groups:
        user = group.user or config.server.user
        unix_group = group.group or config.server.group
        for name, value in (("user", user), ("group", unix_group)):
            try:
                resolve_ids(value, "") if name == "user" else resolve_ids("", value)
            except KeyError as exc:
                problems.append(f"{where}: groups.{group.name}.{name}: {exc.args[0]}")
    return problems


def check_apps_isolated(config: Config) -> list[str]:
    """`check_apps` in a forked child per group, which becomes that group's worker first (its
    environment, user and group), so the import does exactly what a worker's will: a file it
    creates belongs to the worker's user, not to root. The master itself never imports app
    code (reload must import it afresh in each new worker)."""
    problems = check_ids(config)
    if problems:
        return problems
    for group in config.groups:  # (a bad server.env_file is named once, not per group)
        problems += [p for p in _in_child(config, group) if p not in problems]
    return problems


def _in_child(config: Config, group: GroupSettings) -> list[str]:
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        code = 0
        try:
            try:
                become_worker(config, group, 0)
            except ValueError as exc:
                found = [f"{config.path or '<config>'}: {exc}"]
            except (KeyError, OSError) as exc:
                where = config.path or "<config>"
                found = [f"{where}: groups.{group.name}.user: cannot switch to it: {exc}"]
            else:
                found = _import_problems(config, [group])
            os.write(write_fd, json.dumps(found).encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    try:
        problems: list[str] = json.loads(b"".join(chunks) or b"[]")
    except ValueError:
        problems = [f"importing group {group.name}'s app crashed the checking process"]
    return problems


def summary(config: Config) -> str:
    rows = [("group", "listen", "workers", "app", "routes")]
    for g in config.groups:
        rows.append(
            (
                g.name,
                g.listen or "-",
                str(g.workers),
                g.app or f"main {g.main}",
                " ".join(g.routes) or ("/" if g is config.default_group else "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)
