"""The command line: start, stop, reload, restart, status, check, nginx and serve.

Exit codes: 0 success, 1 the command failed (the master could not start, did not stop...),
2 bad usage or a bad config file, 3 no master running, 4 permission denied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import select
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aioworker.cli import waiting
from aioworker.cli.arguments import build_parser, flag
from aioworker.config import Config, ConfigError, HttpSettings, ServerSettings, load
from aioworker.supervisor import check
from aioworker.supervisor.runner import AlreadyRunning, is_master, pid_alive, read_pid

__all__ = ["CliError", "main", "master_pid", "query_control"]

OK, FAILED, BAD_CONFIG, NOT_RUNNING, PERMISSION = 0, 1, 2, 3, 4


class CliError(Exception):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- talking to the master


def master_pid(config: Config) -> int:
    """The running master's pid from its pid file; CliError when none is running."""
    if not config.server.pid_file:
        raise CliError("no pid file configured ([server] pid_file is empty)", NOT_RUNNING)
    path = config.pid_path
    try:
        pid = read_pid(path)
    except PermissionError:
        raise CliError(f"permission denied reading the pid file {path}", PERMISSION) from None
    except OSError as exc:
        raise CliError(f"cannot read the pid file {path}: {exc.strerror}") from None
    if pid is None:
        raise CliError(f"no master running (no pid file at {path})", NOT_RUNNING)
    if not pid_alive(pid):
        raise CliError(
            f"no master running (stale pid file {path}: pid {pid} is not running)", NOT_RUNNING
        )
    if not is_master(pid):
        raise CliError(
            f"no master running (stale pid file {path}: pid {pid} is another program)",
            NOT_RUNNING,
        )
    return pid


def send_signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except PermissionError:
        raise CliError(
            f"permission denied to signal the master (pid {pid}); run as its user or root",
            PERMISSION,
        ) from None
    except ProcessLookupError:
        raise CliError(f"no master running (pid {pid} just exited)", NOT_RUNNING) from None


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until `pid` exits; False on timeout. Uses a pidfd where the kernel has one."""
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    try:
        while pid_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd >= 0:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(0.05, left))
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def query_control(config: Config, command: str, **params: Any) -> dict[str, Any] | None:
    """Ask the master over its control socket; None when no control socket answers
    (then every command falls back to the pid file and signals)."""
    from aioworker.supervisor import control

    try:
        return control.query(config, command, **params)
    except control.ControlPermissionError as exc:
        raise CliError(str(exc), PERMISSION) from None
    except control.ControlError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------- commands


def cmd_start(args: argparse.Namespace, config: Config) -> int:
    if getattr(args, "group", None):  # restart reuses start and stop without -g
        return _group_command(config, "start", args.group, not args.no_wait)
    problems = check.check_apps_isolated(config)
    if problems:
        raise CliError("\n".join(problems), BAD_CONFIG)
    watch = _watch_paths(args, config)
    from aioworker.launch import run

    try:
        return run(config, watch=watch, daemon=args.daemon)
    except AlreadyRunning as exc:
        raise CliError(str(exc)) from None


def _watch_paths(args: argparse.Namespace, config: Config) -> list[str]:
    if not getattr(args, "watch", False):
        return []
    return [str(config.resolve(p)) for p in config.server.watch] or [str(config.base_dir)]


def _group_command(config: Config, command: str, groups: list[str], wait: bool = True) -> int:
    """`stop -g` / `start -g`: one group of the running master, over the control socket;
    then wait until its workers are gone (stop) or all ready (start)."""
    pid = master_pid(config)
    _check_groups(config, groups)
    before = query_control(config, "status") if wait else None
    if query_control(config, command, groups=groups) is None:
        raise CliError(
            f"{command} -g needs the master's control socket ([server] control_socket), "
            "which did not answer"
        )
    verb = "stopping" if command == "stop" else "starting"
    print(f"{verb} {', '.join(groups)} (pid {pid})", flush=True)
    if before is None:
        return OK
    outcome = waiting.wait_groups(
        _asker(config), command, groups, before, waiting.bound(config, groups)
    )
    return _report(outcome, "stopped" if command == "stop" else "started", command)


def _check_groups(config: Config, groups: list[str]) -> None:
    unknown = [g for g in groups if g not in {x.name for x in config.groups}]
    if unknown:
        raise CliError(f"no group named {', '.join(unknown)} in {config.path}", BAD_CONFIG)


def _asker(config: Config) -> waiting.Query:
    return lambda command, **params: query_control(config, command, **params)


def _report(outcome: waiting.Outcome, done: str, command: str) -> int:
    """Print each group's outcome: 0 when every one succeeded, else 1 with the reasons."""
    if outcome.done:
        print(f"{done} {', '.join(outcome.done)}")
    for name, error in outcome.failed.items():
        print(f"aioworker {command}: group {name} could not be {done}: {error}", file=sys.stderr)
    return FAILED if outcome.failed else OK


def cmd_stop(args: argparse.Namespace, config: Config) -> int:
    if getattr(args, "group", None):
        return _group_command(config, "stop", args.group, not args.no_wait)
    pid = master_pid(config)
    if query_control(config, "stop", fast=args.fast) is None:
        send_signal(pid, signal.SIGQUIT if args.fast else signal.SIGTERM)
    timeout = 10.0 if args.fast else config.server.http.graceful_timeout + 15.0
    if not wait_exit(pid, timeout):
        raise CliError(f"the master (pid {pid}) is still running after {timeout:g}s")
    print(f"stopped (pid {pid})")
    return OK


def cmd_reload(args: argparse.Namespace, config: Config) -> int:
    pid = master_pid(config)
    _check_groups(config, args.group)
    if args.no_wait:
        if args.group:
            if query_control(config, "reload", groups=args.group) is None:
                raise CliError(_RELOAD_NEEDS_CONTROL)
            print(f"reloading {', '.join(args.group)} (pid {pid})")
        else:
            send_signal(pid, signal.SIGHUP)
            print(f"reloading every reloadable group (pid {pid})")
        return OK
    answer = query_control(config, "reload", groups=args.group or None)
    if answer is None:
        if args.group:
            raise CliError(_RELOAD_NEEDS_CONTROL)
        send_signal(pid, signal.SIGHUP)
        print(f"reloading every reloadable group (pid {pid}); no control socket to wait on")
        return OK
    for note in answer.get("notes", []):
        print(f"aioworker reload: note: {note}", file=sys.stderr)
    generations: dict[str, int] = answer.get("generations", {})
    if not generations:
        print(f"nothing to reload (pid {pid}): no group is reloadable")
        return OK
    print(f"reloading {', '.join(generations)} (pid {pid})", flush=True)
    timeout = waiting.bound(config, list(generations))
    return _report(
        waiting.wait_reloaded(_asker(config), generations, timeout), "reloaded", "reload"
    )


_RELOAD_NEEDS_CONTROL = (
    "reloading single groups needs the master's control socket, which did not answer; "
    "`reload` without -g reloads every reloadable group"
)


def cmd_restart(args: argparse.Namespace, config: Config) -> int:
    # Check the new config and apps before stopping the running master.
    problems = check.check_apps_isolated(config)
    if problems:
        raise CliError("\n".join(problems), BAD_CONFIG)
    try:
        master_pid(config)
    except CliError as exc:
        if exc.code != NOT_RUNNING:
            raise
        print(f"{exc}; starting")
    else:
        args.fast = False
        cmd_stop(args, config)
    return cmd_start(args, config)


def collect_status(config: Config) -> dict[str, Any]:
    """Status as plain data: from the control socket when it answers, else pid file + config."""
    answer = query_control(config, "status")
    if answer is not None:
        return answer
    pid = master_pid(config)
    return {
        "pid": pid,
        "source": "pid file",
        "groups": [
            {"name": g.name, "listen": g.listen, "expected": g.workers, "main": g.main}
            for g in config.groups
        ],
    }


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    status = collect_status(config)
    if args.json:
        print(json.dumps(status, indent=2))
        return OK
    if "source" not in status:  # the master's own account, from the control socket
        from aioworker.observe.status import render

        # Lines are cut to fit a terminal; piped (grep, logs), they are kept whole.
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 100_000
        sys.stdout.write(render(status, width=width))
        return OK
    print(f"master running (pid {status['pid']}; no control socket: from the pid file)")
    for g in status["groups"]:
        print(
            f"  {g['name']}: {g.get('listen') or 'main ' + g.get('main', '')}, "
            f"{g['expected']} workers expected"
        )
    return OK


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    problems = check.check_apps_isolated(config)  # as the workers will import
    if problems:
        raise CliError("\n".join(problems), BAD_CONFIG)
    print(f"{config.path}: ok, {len(config.groups)} groups")
    print(check.summary(config))
    return OK


def cmd_nginx(args: argparse.Namespace, config: Config) -> int:
    from aioworker.frontdoor import nginx

    try:
        text = nginx.render(
            config,
            listen=args.listen,
            server_name=args.server_name,
            static_root=args.root,
            full=args.full,
        )
    except ConfigError as exc:
        raise CliError(str(exc), BAD_CONFIG) from None
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return OK


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {}
    for f in dataclasses.fields(HttpSettings):
        value = getattr(args, f"http_{f.name}", None)
        if value is not None:
            overrides[f.name] = value
    http = HttpSettings(**overrides)
    server = ServerSettings(pid_file="", control_socket="", log_level=args.log_level, http=http)
    tls = {k: getattr(args, k) for k in ("certfile", "keyfile", "ca_certs", "ciphers")}
    tls = {k: v for k, v in tls.items() if v}
    listen = args.listen
    if tls and listen.startswith("http://"):  # as uvicorn's --ssl-certfile: https, same port
        listen = "https://" + listen.removeprefix("http://")
    try:
        config = Config.single(
            args.app, listen, args.count, factory=args.factory, http=http, server=server, **tls
        )
    except ConfigError as exc:
        raise CliError(_as_flag(str(exc)), BAD_CONFIG) from None
    problems = check.check_apps_isolated(config)
    if problems:
        raise CliError("\n".join(_as_flag(p) for p in problems), BAD_CONFIG)
    from aioworker.launch import run

    return run(config, watch=[str(Path.cwd())] if args.watch else [])


def _as_flag(problem: str) -> str:
    """``<config>: groups.web.max_headers: ...`` (or server.) as ``--max-headers: ...``."""
    match = re.match(r"<config>: (?:server|groups\.web)\.(\w+): ", problem)
    if not match:
        return problem
    name = "MODULE:APP" if match[1] == "app" else flag(match[1])
    return f"{name}: {problem[match.end() :]}"


COMMANDS = {
    "start": cmd_start,
    "stop": cmd_stop,
    "reload": cmd_reload,
    "restart": cmd_restart,
    "status": cmd_status,
    "check": cmd_check,
    "nginx": cmd_nginx,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        try:
            config = load(args.config)
        except ConfigError as exc:
            hint = " (give the config file with -c FILE)" if args.config == "config.toml" else ""
            raise CliError(f"{exc}{hint}", BAD_CONFIG) from None
        return COMMANDS[args.command](args, config)
    except CliError as exc:
        print(f"aioworker {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
