"""aioworker: a pure-asyncio HTTP/1.1 ASGI server with pre-forked worker groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aioworker._version import __version__
from aioworker.config import (
    Config,
    ConfigError,
    GroupSettings,
    HttpSettings,
    MetricsSettings,
    ServerSettings,
)
from aioworker.config import load as load_config

if TYPE_CHECKING:
    from aioworker.http.server import Server, serve, start_server
    from aioworker.http.server import run as run_app
    from aioworker.launch import run


__all__ = [
    "Config",
    "ConfigError",
    "GroupSettings",
    "HttpSettings",
    "MetricsSettings",
    "Server",
    "ServerSettings",
    "__version__",
    "load_config",
    "run",
    "run_app",
    "serve",
    "start_server",
]

# The engine and the master are imported on first use: `import aioworker` stays cheap and
# works for config-only tools (check, nginx).
_LAZY = {
    "Server": ("aioworker.http.server", "Server"),
    "serve": ("aioworker.http.server", "serve"),
    "start_server": ("aioworker.http.server", "start_server"),
    "run_app": ("aioworker.http.server", "run"),
    "run": ("aioworker.launch", "run"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'aioworker' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
