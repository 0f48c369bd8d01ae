"""Servers side by side, taking turns: start each once, run the rounds interleaved, stop them all.

An idle server costs nothing, so every setup of a scenario runs at once and they take turns,
one round each, as many rounds as the plan says: a burst of other work on a shared machine
then spreads over all of them instead of landing on one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.context import Context
from benchmarks.procs import Server

# Start a setup with its config (if any) in the given directory.
Starter = Callable[[Path], Server]
# One round against a started server: (round number, label, server) -> figures.
Measure = Callable[[int, str, Server], dict[str, Any]]
# One round's figures in a progress line.
Describe = Callable[[dict[str, Any]], str]


def aioworker_group(ctx: Context, workers: int, options: tuple[str, ...] = ()) -> Starter:
    """`start -c`, one group of `workers` serving the example app; `options`: more TOML lines."""
    # Level info: the master logs each move ("moved N queued connections"), counted per round.
    return lambda tmp: servers.start_group(
        tmp, workers, ctx.server_cpus, options=options, log_level="info"
    )


def competitor(ctx: Context, name: str, workers: int) -> Starter:
    """Another server (uvicorn, gunicorn, ...) with `workers` serving the example app."""
    return lambda tmp: servers.start(name, servers.EXAMPLE_APP, workers, ctx.server_cpus, ctx.avail)


def take_turns(
    ctx: Context,
    scenario: str,
    setups: list[tuple[str, Starter]],
    rounds: int,
    measure: Measure,
    describe: Describe,
) -> dict[str, list[dict[str, Any]]]:
    """label -> the figures of each round. A setup that fails to start or to finish a round is
    left out (with a note). Each round's figures gain "moved": how many queued connections an
    aioworker master moved to another worker meanwhile (its log, level info), None for others."""
    results: dict[str, list[dict[str, Any]]] = {}
    started: list[tuple[str, Server]] = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{scenario}-") as tmp:
        try:
            for label, starter in setups:
                directory = Path(tmp) / label
                directory.mkdir()
                try:
                    started.append((label, starter(directory)))
                except RuntimeError as exc:
                    ctx.note(f"{scenario} {label} failed to start: {str(exc).splitlines()[0]}")
            for number in range(1, rounds + 1):
                for label, server in started:
                    before = servers.moved_connections(server.log_text())
                    try:
                        figures = measure(number, label, server)
                    except RuntimeError as exc:
                        ctx.note(f"{scenario} {label}: {str(exc).splitlines()[0]}")
                        continue
                    moved = servers.moved_connections(server.log_text()) - before
                    figures["moved"] = moved if label.startswith("aioworker") else None
                    results.setdefault(label, []).append(figures)
                    ctx.progress(
                        f"  round {number} {label:<24} {describe(figures)}"
                        + ("" if figures["moved"] is None else f"  moved {moved}")
                    )
        finally:
            for label, server in started:
                ctx.stop(server, label)
    return results
