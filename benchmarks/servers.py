"""The servers under test: how to start each one on a port with N workers, and which exist here.

Every competitor runs with its recommended fast settings and no access log:
uvicorn (httptools, uvloop), granian (ASGI interface, uvloop), hypercorn (uvloop worker),
gunicorn with uvicorn's worker class, the ASGI floor and the canned-response ceiling.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.procs import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HELLO_APP = "benchmarks.apps:app"
EXAMPLE_APP = "examples.app:app"

# Order of the tables: ours first, then the competitors, then the floor and the ceiling.
ALL = ("aioworker", "uvicorn", "granian", "hypercorn", "gunicorn", "floor", "ceiling")
# hello world on a master without hooks, and with the Observability hook (scoreboard, heartbeat,
# watchdog, RSS sampling): the cost of the scoreboard (benchmarks/launch.py)
SCOREBOARD_AB = ("aioworker-bare", "aioworker-scoreboard")
_MODULES = {
    "uvicorn": ("uvicorn", "httptools", "uvloop"),
    "granian": ("granian",),
    "hypercorn": ("hypercorn", "uvloop"),
    "gunicorn": ("gunicorn", "uvicorn_worker"),
    "floor": ("httptools", "uvloop"),
    "ceiling": ("httptools",),
}


def env() -> dict[str, str]:
    """The servers' environment: the repository importable, output unbuffered."""
    values = dict(os.environ)
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), values.get("PYTHONPATH")]))
    values["PYTHONUNBUFFERED"] = "1"
    return values


def _cli_has(command: str) -> bool:
    if importlib.util.find_spec("aioworker.cli.commands") is None:
        return False
    probe = subprocess.run(
        [PY, "-m", "aioworker", command, "--help"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


class Availability:
    """Which servers and aioworker entry points this machine has, probed once."""

    def __init__(self) -> None:
        self.aioworker_serve = _cli_has("serve")
        self.aioworker_start = _cli_has("start")
        self.aioworker_engine = importlib.util.find_spec("aioworker.http.server") is not None
        # The scoreboard comparison runs a master with and without the Observability hook.
        self.observe = all(
            importlib.util.find_spec(m) is not None
            for m in ("aioworker.supervisor.runner", "aioworker.observe.hook")
        )
        self.missing: dict[str, str] = {}
        for name, modules in _MODULES.items():
            absent = [m for m in modules if importlib.util.find_spec(m) is None]
            if absent:
                self.missing[name] = "not installed: " + ", ".join(absent)
        if not (self.aioworker_serve or self.aioworker_engine):
            self.missing["aioworker"] = "aioworker.http.server is not there yet"

    def has(self, name: str) -> bool:
        return name not in self.missing

    def aioworker_how(self) -> str:
        if self.aioworker_serve:
            return "python -m aioworker serve"
        return "benchmarks/launch.py (aioworker.http.server.run)"


def command(name: str, app: str, port: int, workers: int, avail: Availability) -> list[str]:
    """The command line that serves `app` on 127.0.0.1:`port` with `workers` processes."""
    host = "127.0.0.1"
    if name == "aioworker":
        if avail.aioworker_serve:
            return [
                PY,
                "-m",
                "aioworker",
                "serve",
                app,
                "--listen",
                f"http://{host}:{port}",
                "--count",
                str(workers),
                "--log-level",
                "warning",
            ]
        if workers != 1:
            raise RuntimeError("the launcher runs one worker; multi-worker runs need the CLI")
        return [PY, "-m", "benchmarks.launch", app, "--host", host, "--port", str(port)]
    if name in SCOREBOARD_AB:
        argv = [PY, "-m", "benchmarks.launch", app, "--host", host, "--port", str(port), "--master"]
        return argv + (["--observe"] if name == "aioworker-scoreboard" else [])
    if name == "uvicorn":
        return [
            PY,
            "-m",
            "uvicorn",
            app,
            "--host",
            host,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ]
    if name == "granian":
        return [
            PY,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
            app,
        ]
    if name == "hypercorn":
        return [
            PY,
            "-m",
            "hypercorn",
            "-b",
            f"{host}:{port}",
            "-w",
            str(workers),
            "-k",
            "uvloop",
            "--log-level",
            "warning",
            app,
        ]
    if name == "gunicorn":
        return [
            PY,
            "-m",
            "gunicorn",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            str(workers),
            "-b",
            f"{host}:{port}",
            "--log-level",
            "warning",
            "--graceful-timeout",
            "10",
            app,
        ]
    if name in ("floor", "ceiling"):
        return [PY, "-m", f"benchmarks.{name}", "--host", host, "--port", str(port)]
    raise ValueError(f"unknown server {name!r}")


def start(
    name: str,
    app: str,
    workers: int,
    cpus: set[int] | None,
    avail: Availability,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """Start one server on a free port and return once it answers (and its workers exist)."""
    port = free_port()
    values = env()
    values.update(extra_env or {})
    server = Server(
        name, command(name, app, port, workers, avail), [port], cpus, cwd=str(ROOT), env=values
    )
    # Single-process servers answer from the process we started; the others fork workers.
    forks = name in ("granian", "hypercorn", "gunicorn", *SCOREBOARD_AB) or (
        name == "aioworker" and avail.aioworker_serve
    )
    expect = workers if workers > 1 or forks else 0
    server.wait_ready(workers=expect)
    return server


def aioworker_config(
    directory: Path,
    groups: dict[str, tuple[int, int, list[str]]],
    app: str = EXAMPLE_APP,
    *,
    options: tuple[str, ...] = (),
    log_level: str = "warning",
    scheme: str = "http",
) -> Path:
    """Write a config.toml for `start -c`: groups maps name -> (port, count, routes); `options`
    are more TOML lines for every group (e.g. "reuse_port = false"); `scheme` "https" needs
    certfile and keyfile among them."""
    lines = [
        "[server]",
        f'pid_file = "{directory / "aioworker.pid"}"',
        f'control_socket = "{directory / "aioworker.sock"}"',
        f'log_level = "{log_level}"',
        "",
    ]
    for name, (port, count, routes) in groups.items():
        lines += [
            f"[groups.{name}]",
            f'app = "{app}"',
            f'listen = "{scheme}://127.0.0.1:{port}"',
            f"count = {count}",
            "routes = [" + ", ".join(f'"{r}"' for r in routes) + "]",
            *options,
            "",
        ]
    path = directory / "config.toml"
    path.write_text("\n".join(lines))
    return path


def start_master(
    config: Path,
    ports: list[int],
    workers: int,
    cpus: set[int] | None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """`python -m aioworker start -c config` in the foreground; ready when every port answers."""
    values = env()
    values.update(extra_env or {})
    server = Server(
        "aioworker",
        [PY, "-m", "aioworker", "start", "-c", str(config)],
        ports,
        cpus,
        cwd=str(ROOT),
        env=values,
    )
    server.wait_ready(workers=workers)
    return server


def start_group(
    directory: Path,
    workers: int,
    cpus: set[int] | None,
    *,
    options: tuple[str, ...] = (),
    log_level: str = "warning",
) -> Server:
    """`start -c` with one group of `workers` serving the example app on a free port; `options`
    are more TOML lines for the group. Its config and pid file live in `directory`."""
    port = free_port()
    config = aioworker_config(
        directory, {"web": (port, workers, ["/"])}, options=options, log_level=log_level
    )
    return start_master(config, [port], workers, cpus)


def moved_connections(log: str) -> int:
    """Connections an aioworker master moved from a blocked slot to a turning worker, as its log
    (level info) says: "moved N queued connections group=G slot=S"."""
    return sum(int(n) for n in re.findall(r"moved (\d+) queued connections", log))
