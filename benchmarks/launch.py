"""Run one aioworker worker on an app with `aioworker.server.run`, for hosts without the CLI.

python -m benchmarks.launch benchmarks.apps:app --port 8000
"""

from __future__ import annotations

import argparse
import importlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("app", help="pkg.module:attr")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    module_name, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attr)
    from aioworker.server import run

    run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
