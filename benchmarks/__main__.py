"""`python -m benchmarks`: run the scenarios, print markdown tables, save JSON and a chart."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    blocked,
    burst,
    features,
    isolation,
    mixed,
    page,
    report,
    restart,
    servers,
    throughput,
    websocket,
)
from benchmarks.context import Context
from benchmarks.procs import cpu_split

SCENARIOS = (
    "throughput",
    "isolation",
    "restart",
    "blocked",
    "mixed",
    "features",
    "burst",
    "websocket",
    "memory",
)


# The scenarios after throughput, in the order they run (and appear in the results).
RUNS: dict[str, Callable[[Context], Any]] = {
    "isolation": isolation.run,
    "restart": restart.run,
    "blocked": blocked.run,
    "mixed": mixed.run,
    "features": features.run,
    "burst": burst.run,
    "websocket": websocket.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="aioworker side by side with uvicorn, granian, hypercorn, gunicorn and a "
        "canned-response ceiling. Tables go to stdout, progress to stderr, JSON and the "
        "isolation chart to benchmarks/results/.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, one round each: a few minutes in total"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=servers.ALL,
        metavar="NAME",
        help=f"run only this server (repeatable): {', '.join(servers.ALL)}",
    )
    parser.add_argument(
        "--builtin-load",
        action="store_true",
        help="use the built-in asyncio load generator even when wrk is installed",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a caveat to print with the results (repeatable), e.g. what else ran on the machine",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write docs/benchmarks.json and the page docs/benchmarks.md made from it",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: write docs/benchmarks.md from this results file (copied to "
        "docs/benchmarks.json when it is another file)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        for path in page.rerender(args.render):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    started = report.utc_now()
    chosen = tuple(args.only or SCENARIOS)
    server_cpus, load_cpus = cpu_split()
    ctx = Context(
        quick=args.quick,
        avail=servers.Availability(),
        server_cpus=server_cpus,
        load_cpus=load_cpus,
        builtin=args.builtin_load,
        servers=tuple(args.server or ()),
    )
    pinning = (
        f"servers pinned to CPU {sorted(server_cpus)}, load generator to CPU {sorted(load_cpus)}"
        if server_cpus and load_cpus
        else "one CPU: servers and load generator share it (not pinned)"
    )
    ctx.progress(f"scenarios: {', '.join(chosen)}; {pinning}")
    ctx.progress(f"load generator: {report.describe_tool(args.builtin_load)}")
    ctx.progress(f"aioworker via {ctx.avail.aioworker_how()}")
    results: dict[str, Any] = {}
    if "throughput" in chosen or chosen == ("memory",):
        # Memory alone still needs servers that ran: the throughput pass gives idle and loaded RSS.
        results["throughput"] = throughput.run(ctx)
    for name, scenario in RUNS.items():
        if name in chosen:
            results[name] = scenario(ctx)
    # RSS is sampled in every scenario that runs: idle after start, then after its load.
    results["memory"] = ctx.memory
    results["meta"] = {
        "command": report.command_line(),
        "quick": args.quick,
        "scenarios": list(chosen),
        "machine": report.machine(),
        "load_generator": report.describe_tool(args.builtin_load),
        "pinning": pinning,
        "aioworker_via": ctx.avail.aioworker_how(),
        "started": started,
        "finished": report.utc_now(),
        "notes": [*args.note, *ctx.notes],
    }
    if not args.no_save:
        for path in report.save(results):
            ctx.progress(f"wrote {path}")
    if args.publish:
        for path in page.publish(results):
            ctx.progress(f"wrote {path}")
    print(report.markdown(results))
    ctx.progress("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
