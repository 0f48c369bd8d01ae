"""The command line's arguments: every command, flag and help text of `python -m aioworker`.

`serve` gets one flag per engine setting, built from `HttpSettings` and its field docs, so a
new limit is a new flag with no change here.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from aioworker._version import __version__
from aioworker.config import HttpSettings

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioworker",
        description="Run ASGI apps in pre-forked worker groups from config.toml.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 no master running, "
        "4 permission denied. `aioworker COMMAND -h` describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"aioworker {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default="config.toml",
        metavar="FILE",
        help="the config file; the pid file and control socket are found from it "
        "(default: ./config.toml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    start = sub.add_parser(
        "start",
        parents=[common],
        help="start the master and its groups",
        description="Check the config, import every app, bind every "
        "listener, then run the master in the foreground (or -d).",
    )
    restart = sub.add_parser(
        "restart",
        parents=[common],
        help="stop the master, then start it",
        description="Graceful stop of the running master (if any), then "
        "start. Rebinds listeners: prefer `reload` for code changes.",
    )
    for p in (start, restart):
        p.add_argument(
            "-d",
            "--daemon",
            action="store_true",
            help="run in the background, logging to [server] log_file",
        )
        p.add_argument(
            "--watch",
            action="store_true",
            help="rolling reload when a .py file changes under [server] watch "
            "(default: the config file's directory)",
        )
    stop = sub.add_parser(
        "stop",
        parents=[common],
        help="stop the master",
        description="Graceful stop (as SIGTERM): listeners close, requests in progress "
        "finish within graceful_timeout; --fast stops at once (as SIGQUIT). Waits until "
        "the master has exited.",
    )
    stop.add_argument("--fast", action="store_true", help="do not wait for requests in progress")
    for p, what in (
        (
            stop,
            "drain and stop only this group's workers (repeatable); the master "
            "and other groups go on, and `start -g` brings it back",
        ),
        (start, "start this group of the running master again after `stop -g` (repeatable)"),
    ):
        p.add_argument("-g", "--group", action="append", default=[], metavar="GROUP", help=what)
    reload = sub.add_parser(
        "reload",
        parents=[common],
        help="rolling reload of the groups",
        description="Re-read config.toml and replace each reloadable "
        "group's workers one slot at a time: the new worker accepts before the old one drains.",
    )
    reload.add_argument(
        "-g",
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="reload only this group (repeatable)",
    )
    status = sub.add_parser(
        "status",
        parents=[common],
        help="show the master and its groups",
        description="Ask the master over its control socket: each group's state (running, "
        "failing, stopped), workers, requests, restarts and last exits. Without a control "
        "socket, only the pid and the configured groups.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser(
        "check",
        parents=[common],
        help="validate the config and import every app",
        description="Load the config, import every group's app, check users and groups, and "
        "print a summary; on errors, exit 2 with one `file: table.key: problem` line each.",
    )
    nginx = sub.add_parser(
        "nginx",
        parents=[common],
        help="print nginx config for the groups",
        description="Print the upstream and server blocks that route each "
        "group's paths to its port (for nginx's conf.d/).",
    )
    nginx.add_argument("--listen", default="80", help="nginx's own listen address (default 80)")
    nginx.add_argument("--server-name", default="_", help="nginx server_name (default _)")
    nginx.add_argument("--root", default=None, metavar="DIR", help="serve static files from DIR")
    nginx.add_argument("--full", action="store_true", help="a complete nginx.conf")
    _serve_parser(sub)
    return parser


def _serve_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve one app without a config file",
        description="Serve MODULE:APP with one group of workers: no config file, no pid file.",
    )
    serve.add_argument("app", metavar="MODULE:APP", help="the ASGI app, as pkg.module:attr")
    serve.add_argument(
        "--listen",
        default="http://127.0.0.1:8000",
        help="http://HOST:PORT or unix:PATH (default http://127.0.0.1:8000)",
    )
    serve.add_argument("--count", type=int, default=1, help="workers (0 = one per CPU; default 1)")
    serve.add_argument("--factory", action="store_true", help="call APP() to build the app")
    serve.add_argument(
        "--watch",
        action="store_true",
        help="rolling reload when a .py file under the current directory changes",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="default info",
    )
    limits = serve.add_argument_group("engine limits and timeouts (as in config.toml)")
    for f in dataclasses.fields(HttpSettings):
        flag = "--" + f.name.replace("_", "-")
        doc = f"{f.metadata['doc']} (default {_shown(f.default)})"
        if isinstance(f.default, bool):
            limits.add_argument(
                flag,
                dest=f"http_{f.name}",
                default=None,
                action=argparse.BooleanOptionalAction,
                help=doc,
            )
        elif isinstance(f.default, tuple):
            limits.add_argument(
                flag,
                dest=f"http_{f.name}",
                default=None,
                metavar="A,B",
                type=lambda v: tuple(x.strip() for x in v.split(",") if x.strip()),
                help=doc,
            )
        else:
            kind = type(f.default)
            limits.add_argument(
                flag,
                dest=f"http_{f.name}",
                default=None,
                type=kind,
                metavar=kind.__name__.upper(),
                help=doc,
            )


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(default) or "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    return repr(default) if isinstance(default, str) else str(default)
