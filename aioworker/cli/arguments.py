"""The command line's arguments: every command, flag and help text of `python -m aioworker`.

The `serve` flags that mirror settings (--listen, --count, --factory, --log-level and one per
engine limit of `HttpSettings`) are built from the settings' fields: name, type, default, help
(the doc) and choices, so a new limit is a new flag with no change here.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from aioworker._version import __version__
from aioworker.config import GroupSettings, HttpSettings, ServerSettings, meta

__all__ = ["build_parser", "flag"]


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
        "group's workers one slot at a time: the new worker accepts before the old one drains. "
        "Waits for the outcome: exit 1, with the reason, when a group's new workers could not "
        "start (the old ones keep serving).",
    )
    reload.add_argument(
        "-g",
        "--group",
        action="append",
        default=[],
        metavar="GROUP",
        help="reload only this group (repeatable)",
    )
    for p, what in (
        (reload, "do not wait for the outcome: exit 0 once the master was asked"),
        (start, "with -g: do not wait until the group's workers are ready"),
        (stop, "with -g: do not wait until the group's workers are gone"),
    ):
        p.add_argument("--no-wait", action="store_true", help=what)
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
    group = _fields(GroupSettings)
    # serve runs one worker on port 8000 unless told otherwise (a group's own defaults are
    # no listen and one worker per CPU).
    _add_setting(serve, group["listen"], default="http://127.0.0.1:8000")
    _add_setting(serve, group["count"], default=1)
    _add_setting(serve, group["factory"], default=False)
    tls = serve.add_argument_group("TLS: with --certfile and --keyfile, --listen is https://")
    for key in ("certfile", "keyfile", "ca_certs", "ciphers"):
        _add_setting(tls, group[key])
    serve.add_argument(
        "--watch",
        action="store_true",
        help="rolling reload when a .py file under the current directory changes",
    )
    log_level = _fields(ServerSettings)["log_level"]
    _add_setting(serve, log_level, default=log_level.default)
    for name, hint in UVICORN_FLAGS.items():
        # A flag without a value takes none: `--reload main:app` must leave main:app alone.
        nargs = "?" if "{}" in hint else 0
        serve.add_argument(name, nargs=nargs, help=argparse.SUPPRESS, action=_Elsewhere, hint=hint)
    limits = serve.add_argument_group("engine limits and timeouts (as in config.toml)")
    for f in dataclasses.fields(HttpSettings):
        # No default: a flag not given leaves the HttpSettings default in place.
        _add_setting(limits, f, dest=f"http_{f.name}")


# uvicorn's flags with a different name here: answered with the flag to use (the value given
# in place of {}) instead of argparse's bare "unrecognized arguments".
UVICORN_FLAGS = {
    "--host": "--listen http://{}:8000",
    "--port": "--listen http://127.0.0.1:{}",
    "--uds": "--listen unix:{}",
    "--workers": "--count {}",
    "--reload": "--watch",
    "--timeout-keep-alive": "--keepalive-timeout {}",
    "--timeout-graceful-shutdown": "--graceful-timeout {}",
    "--ssl-certfile": "--certfile {}",
    "--ssl-keyfile": "--keyfile {}",
    "--ssl-ca-certs": "--ca-certs {}",
    "--ssl-ciphers": "--ciphers {}",
}


class _Elsewhere(argparse.Action):
    """A flag of another server: exit 2 with the flag to use here, without the usage text."""

    def __init__(self, *args: Any, hint: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, value: Any, option: Any = None
    ) -> None:
        given = f"{option} {value}" if isinstance(value, str) else str(option)
        hint = self.hint.format(value if isinstance(value, str) else "VALUE")
        parser.exit(2, f"{parser.prog}: {given}: uvicorn's flag; here it is {hint}\n")


def flag(key: str) -> str:
    """The command-line flag of a setting: max_url_bytes -> --max-url-bytes."""
    return "--" + key.replace("_", "-")


def _fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _add_setting(
    parser: Any, f: dataclasses.Field[Any], *, dest: str | None = None, default: Any = None
) -> None:
    """One flag for the setting `f`: its name, type, doc and choices; `default` None = unset."""
    m = meta(f)
    shown = f.default if default is None else default
    options: dict[str, Any] = {
        "dest": dest or f.name,
        "default": default,
        "help": f"{m.text} (default {_shown(shown)})",
    }
    if isinstance(f.default, bool):
        options["action"] = argparse.BooleanOptionalAction
    elif isinstance(f.default, tuple):
        options["metavar"] = "A,B"
        options["type"] = lambda v: tuple(x.strip() for x in v.split(",") if x.strip())
    elif m.choices:
        options["choices"] = m.choices
        options["type"] = str.lower
    else:
        options["type"] = type(f.default)
        options["metavar"] = type(f.default).__name__.upper()
    parser.add_argument(flag(f.name), **options)


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(default) or "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    return repr(default) if isinstance(default, str) else str(default)
