"""Start aioworker for the benchmarks where the CLI offers no switch for what is measured.

    python -m benchmarks.launch APP --port P                 one engine, aioworker.http.server.run
    python -m benchmarks.launch APP --port P --master        master + 1 worker, no hooks
    python -m benchmarks.launch APP --port P --master --observe    ... + the Observability hook
    python -m benchmarks.launch APP --master --config FILE [--observe]   a config.toml's groups

The first runs where `aioworker serve` does not exist yet; the other two compare hello world
with and without the scoreboard (its heartbeat, watchdog and RSS sampling) on one master; the
last runs the feature-cost setups (benchmarks/features.py), each a config.toml with one option on.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any


def _master(app: str, host: str, port: int, observe: bool, config_file: str = "") -> int:
    from aioworker.config import Config, ServerSettings
    from aioworker.supervisor import runner

    server = ServerSettings(pid_file="", control_socket="", log_level="warning")
    config: Config | Path = (
        Path(config_file)
        if config_file
        else Config.single(app, f"http://{host}:{port}", 1, server=server)
    )
    hooks: list[Any] = []
    if observe:
        from aioworker.observe.hook import Observability

        hooks.append(Observability())
    # The supervisor's runner runs exactly these hooks (none, or the observability hook).
    return runner.run(config, hooks=hooks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("app", help="pkg.module:attr")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--master", action="store_true", help="a master with one worker")
    parser.add_argument("--observe", action="store_true", help="with the Observability hook")
    parser.add_argument("--config", default="", help="with --master: serve this config.toml")
    args = parser.parse_args()
    if args.master:
        return _master(args.app, args.host, args.port, args.observe, args.config)
    module_name, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attr)
    from aioworker.http.server import run

    run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
