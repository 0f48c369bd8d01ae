"""Start a master with the standard hooks: what `aioworker.run()` and `aioworker start` call.

The supervisor runs exactly the hooks it is given (`supervisor.runner.run`); this is where the
product puts them together: the observability hook (scoreboard, watchdog, metrics, richer
status) first, then the caller's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from aioworker.config import Config
from aioworker.observe import Observability
from aioworker.supervisor import runner
from aioworker.supervisor.hooks import Hook

__all__ = ["run"]


def run(
    config: Config | str | os.PathLike[str],
    *,
    watch: Sequence[str] = (),
    daemon: bool = False,
    hooks: Iterable[Hook] = (),
) -> int:
    """Start the master for `config` (a Config or a config.toml path); return its exit code.

    Blocks until the master stops. `hooks` run after the standard observability hook; an
    `Observability` among them replaces it (the last one given serves). Raises ConfigError for
    a bad file and AlreadyRunning when the pid file names a live master.
    """
    return runner.run(config, watch=watch, daemon=daemon, hooks=[Observability(), *hooks])
