"""Configuration layer: the settings dataclasses and loading them from config.toml.

`settings` defines every key once (default, doc, choices, bounds, whether a change needs a
restart); `loading` turns a file, a dict or CLI flags into a validated `Config`. Nothing here
imports another aioworker layer.
"""

from aioworker.config.loading import (
    Config,
    ConfigError,
    GroupSettings,
    HttpSettings,
    Listen,
    MetricsSettings,
    ServerSettings,
    from_dict,
    load,
    parse_listen,
    validate,
)

__all__ = [
    "Config",
    "ConfigError",
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "MetricsSettings",
    "ServerSettings",
    "from_dict",
    "load",
    "parse_listen",
    "validate",
]
