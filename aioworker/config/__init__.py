"""Configuration layer: the settings dataclasses and loading them from config.toml.

`settings` defines every key once (default, doc, choices, bounds, whether a change needs a
restart); `loading` turns a file, a dict or CLI flags into a validated `Config`; `changes` names
the keys whose change needs a restart; `reference` renders docs/configuration.md and config.toml
from the settings; `tls` builds an https:// listener's SSLContext from its files. Nothing here
imports another aioworker layer.
"""

from aioworker.config.changes import keep_running, restart_needed
from aioworker.config.loading import (
    Config,
    ConfigError,
    GroupSettings,
    HttpSettings,
    Listen,
    MetricsSettings,
    QueueSettings,
    ServerSettings,
    from_dict,
    load,
    parse_listen,
    validate,
)
from aioworker.config.settings import LOG_LEVELS, Meta, meta
from aioworker.config.tls import TlsError, tls_context

__all__ = [
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "Meta",
    "MetricsSettings",
    "QueueSettings",
    "ServerSettings",
    "TlsError",
    "from_dict",
    "keep_running",
    "load",
    "meta",
    "parse_listen",
    "restart_needed",
    "tls_context",
    "validate",
]
