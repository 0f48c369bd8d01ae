"""Configuration: the whole `Config`, loaded from config.toml or built by the CLI or code.

Every setting is defined once, in `aioworker.config.settings`, with its default and its `Meta`;
this module re-exports those classes. ``load(path)`` validates the whole file before anything
starts and names ``file: table.key: problem`` on every error; unknown keys are errors with a
suggestion. Types follow each field's default, choices and bounds its `Meta`; only the rules
metadata cannot say (addresses, import strings, routes, one port per group) are written here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from aioworker.config.accesslog import parse_format
from aioworker.config.settings import (
    GroupSettings,
    HttpSettings,
    Listen,
    MetricsSettings,
    QueueSettings,
    ServerSettings,
    meta,
    parse_listen,
)
from aioworker.config.tls import tls_problem

__all__ = [
    "Config",
    "ConfigError",
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "MetricsSettings",
    "QueueSettings",
    "ServerSettings",
    "from_dict",
    "load",
    "parse_listen",
    "validate",
]


class ConfigError(ValueError):
    """A configuration problem, phrased as ``file: table.key: problem``."""


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: what the master runs."""

    server: ServerSettings = field(default_factory=ServerSettings)
    groups: tuple[GroupSettings, ...] = ()
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        """Directory relative paths are resolved from: the config file's, else the cwd."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """`relative` from `base_dir`, its directory's links resolved, never its last part:
        a file planted as a link must be refused, not followed."""
        if not relative:
            return Path()
        path = Path(os.path.abspath(self.base_dir / relative))
        return path.parent.resolve() / path.name if path.name else path

    @property
    def pid_path(self) -> Path:
        return self.resolve(self.server.pid_file)

    @property
    def control_path(self) -> Path:
        return self.resolve(self.server.control_socket)

    def group(self, name: str) -> GroupSettings:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def default_group(self) -> GroupSettings | None:
        """The group that serves every path no other group claims."""
        serving = [g for g in self.groups if g.listen]
        for group in serving:
            if "/" in group.routes:
                return group
        for group in serving:
            if not group.routes:
                return group
        return serving[0] if serving else None

    @classmethod
    def single(
        cls,
        app: str,
        listen: str = "http://127.0.0.1:8000",
        count: int = 1,
        *,
        factory: bool = False,
        http: HttpSettings | None = None,
        server: ServerSettings | None = None,
        **group_keys: Any,
    ) -> Config:
        """One group serving `app`: what `aioworker serve APP` and simple embeddings use;
        `group_keys` are more GroupSettings fields (certfile, keyfile, ...)."""
        http = http or HttpSettings()
        group = GroupSettings(
            name="web",
            app=app,
            listen=listen,
            count=count,
            factory=factory,
            http=http,
            **group_keys,
        )
        config = cls(server=server or ServerSettings(http=http), groups=(group,))
        validate(config)
        return config


# --------------------------------------------------------------------------- loading

_HTTP_KEYS = {f.name: f for f in dataclasses.fields(HttpSettings)}
_SERVER_KEYS = {f.name: f for f in dataclasses.fields(ServerSettings) if f.name != "http"}
_GROUP_KEYS = {
    f.name: f for f in dataclasses.fields(GroupSettings) if f.name not in ("name", "http")
}
_METRICS_KEYS = {f.name: f for f in dataclasses.fields(MetricsSettings)}
_QUEUE_KEYS = {f.name: f for f in dataclasses.fields(QueueSettings)}


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError naming file, table and key."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return from_dict(data, path=file.resolve())


def from_dict(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Build a validated Config from parsed TOML (or an equivalent dict)."""
    where = str(path) if path is not None else "<config>"

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {problem}")

    _check_keys(data, {"server": None, "groups": None, "metrics": None, "queue": None}, "", fail)

    server_table = _table(data, "server", fail)
    _check_keys(server_table, {**_SERVER_KEYS, **_HTTP_KEYS}, "server", fail)
    server_http = _build(HttpSettings, _HTTP_KEYS, server_table, "server", fail, HttpSettings())
    server = _build(
        ServerSettings, _SERVER_KEYS, server_table, "server", fail, ServerSettings(http=server_http)
    )

    groups_table = _table(data, "groups", fail)
    groups = []
    for name, table in groups_table.items():
        prefix = f"groups.{name}"
        if not isinstance(table, Mapping):
            raise fail(prefix, "must be a table, as in [groups.web]")
        _check_keys(table, {**_GROUP_KEYS, **_HTTP_KEYS}, prefix, fail)
        http = _build(HttpSettings, _HTTP_KEYS, table, prefix, fail, server_http)
        base = GroupSettings(name=name, http=http)
        groups.append(_build(GroupSettings, _GROUP_KEYS, table, prefix, fail, base))

    metrics = _build(
        MetricsSettings,
        _METRICS_KEYS,
        _table(data, "metrics", fail),
        "metrics",
        fail,
        MetricsSettings(),
    )
    _check_keys(_table(data, "metrics", fail), _METRICS_KEYS, "metrics", fail)
    queue_table = _table(data, "queue", fail)
    _check_keys(queue_table, _QUEUE_KEYS, "queue", fail)
    queue = _build(QueueSettings, _QUEUE_KEYS, queue_table, "queue", fail, QueueSettings())
    config = Config(server=server, groups=tuple(groups), metrics=metrics, queue=queue, path=path)
    validate(config, where)
    return config


def validate(config: Config, where: str = "<config>") -> None:
    """Cross-field checks shared by files, the CLI and code: raise ConfigError."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {problem}")

    if not config.groups:
        raise fail("groups", "no groups defined; add at least one [groups.NAME] table")
    _check_meta(config.server, "server", fail)
    _check_meta(config.queue, "queue", fail)
    if config.queue.url and not config.queue.url.startswith(("redis://", "rediss://", "unix://")):
        raise fail("queue.url", f"{config.queue.url!r} is not redis://HOST:PORT/DB")
    _check_forwarded(config.server.http, "server", fail)
    _check_access_format(config.server.http, "server", fail)
    ports: dict[tuple[str, int | str], str] = {}
    for group in config.groups:
        prefix = f"groups.{group.name}"
        _check_meta(group, prefix, fail)
        _check_forwarded(group.http, prefix, fail)
        _check_access_format(group.http, prefix, fail)
        if group.queue:
            _check_queue_group(config, group, prefix, fail)
        elif group.listen and group.main:
            raise fail(f"{prefix}.main", "a group has either listen (with app) or main, not both")
        elif not group.listen and not group.main:
            raise fail(prefix, "needs listen and app (a server) or main (a coroutine)")
        if group.listen and not group.queue:
            if not group.app:
                raise fail(f"{prefix}.app", "required when listen is set ('pkg.module:attr')")
            _check_import_string(group.app, f"{prefix}.app", fail)
            try:
                address = parse_listen(group.listen)
            except ValueError as exc:
                raise fail(f"{prefix}.listen", str(exc)) from None
            key: tuple[str, int | str] = (
                ("unix", address.path) if address.is_unix else ("tcp", address.port)
            )
            if key in ports and key != ("tcp", 0):
                raise fail(
                    f"{prefix}.listen", f"{group.listen} is also used by groups.{ports[key]}"
                )
            ports[key] = group.name
            tls = tls_problem(group, address.tls, config.base_dir)
            if tls is not None:
                raise fail(f"{prefix}.{tls[0]}", tls[1])
        elif group.main:
            _check_import_string(group.main, f"{prefix}.main", fail)
        for route in group.routes:
            if not route.startswith("/"):
                raise fail(f"{prefix}.routes", f"{route!r} must start with '/'")
        for host in group.hosts:
            _, sep, port = host.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
                raise fail(f"{prefix}.hosts", f"{host!r} is not HOST:PORT")
    if config.metrics.listen:
        try:
            metrics = parse_listen(config.metrics.listen)
        except ValueError as exc:
            raise fail("metrics.listen", str(exc)) from None
        if metrics.tls:
            raise fail("metrics.listen", "https:// is for groups; metrics are served over http://")
        key = ("unix", metrics.path) if metrics.is_unix else ("tcp", metrics.port)
        if key in ports and key != ("tcp", 0):
            raise fail(
                "metrics.listen", f"{config.metrics.listen} is also used by groups.{ports[key]}"
            )


def _check_queue_group(config: Config, group: GroupSettings, prefix: str, fail: Any) -> None:
    """A queue-fed group: an app, routes the default group enqueues, a [queue] url, no listener."""
    if not config.queue.url:
        raise fail(f"{prefix}.queue", "needs [queue] url (the Redis the jobs go through)")
    if group.listen or group.main:
        key = "listen" if group.listen else "main"
        raise fail(f"{prefix}.{key}", "a queue-fed group has no listen or main: it pulls jobs")
    if not group.app:
        raise fail(f"{prefix}.app", "required for a queue-fed group ('pkg.module:attr')")
    _check_import_string(group.app, f"{prefix}.app", fail)
    if not group.routes or "/" in group.routes:
        raise fail(f"{prefix}.routes", "a queue-fed group needs routes other than '/'")
    default = config.default_group
    deadline = default.http.request_timeout if default is not None else 0.0
    if default is not None and deadline and group.reply_timeout >= deadline:
        # The default group's engine waits for the answer: its request_timeout would cut the
        # wait with a 504 before the 202 and Location.
        raise fail(
            f"{prefix}.reply_timeout",
            f"must be less than groups.{default.name}.request_timeout ({deadline:g}s)",
        )


def _check_meta(settings: Any, prefix: str, fail: Any) -> None:
    """The choices and bounds of every field of `settings`, its nested tables included."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            _check_meta(value, prefix, fail)
            continue
        problem = _problem(value, f)
        if problem:
            raise fail(f"{prefix}.{f.name}", problem)


def _problem(value: Any, f: dataclasses.Field[Any]) -> str:
    """What is wrong with `value` for the field `f` by its Meta, or ''."""
    m = meta(f)
    if m.choices and str(value).lower() not in m.choices:
        what = f.name.replace("_", " ")
        return f"{value!r} is not a {what}; use one of {', '.join(m.choices)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if m.minimum is not None and value < m.minimum:
        if m.minimum == 0:
            return f"must be 0 ({m.zero}) or more" if m.zero else "must not be negative"
        return f"must be at least {m.minimum:g}"
    if m.above is not None and value <= m.above:
        unit = " seconds" if isinstance(f.default, float) else ""
        return f"must be more than {m.above:g}{unit}"
    return ""


def _check_forwarded(http: HttpSettings, prefix: str, fail: Any) -> None:
    import ipaddress

    for entry in http.forwarded_allow_ips:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise fail(
                f"{prefix}.forwarded_allow_ips", f"{entry!r} is not an address or CIDR"
            ) from None


def _check_access_format(http: HttpSettings, prefix: str, fail: Any) -> None:
    try:
        parse_format(http.access_log_format)
    except ValueError as exc:
        raise fail(f"{prefix}.access_log_format", str(exc)) from None


def _check_import_string(value: str, key: str, fail: Any) -> None:
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise fail(key, f"{value!r} must be 'pkg.module:attribute'")


def _table(data: Mapping[str, Any], name: str, fail: Any) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise fail(name, "must be a table")
    return table


# What other servers (uvicorn, gunicorn, hypercorn) call a key that has another name here: too
# far apart for difflib to suggest.
_OTHER_NAMES = {
    "workers": "count",
    "host": "listen",
    "port": "listen",
    "bind": "listen",
    "uds": "listen",
    "timeout_keep_alive": "keepalive_timeout",
    "timeout_graceful_shutdown": "graceful_timeout",
}


def _check_keys(table: Mapping[str, Any], known: Mapping[str, Any], prefix: str, fail: Any) -> None:
    for key in table:
        if key not in known:
            full = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            if not close and _OTHER_NAMES.get(key) in known:
                close = [_OTHER_NAMES[key]]
            hint = f"; did you mean {close[0]}?" if close else ""
            raise fail(full, f"unknown key{hint}")


def _build(
    cls: Any,
    fields: Mapping[str, dataclasses.Field[Any]],
    table: Mapping[str, Any],
    prefix: str,
    fail: Any,
    base: Any,
) -> Any:
    """Return `base` with the keys of `table` that belong to `cls`, type-checked."""
    changes: dict[str, Any] = {}
    for key in fields:
        if key not in table:
            continue
        changes[key] = _coerce(table[key], getattr(base, key), f"{prefix}.{key}", fail)
    if cls is ServerSettings and "http" not in changes:
        changes["http"] = base.http
    return dataclasses.replace(base, **changes)


def _coerce(value: Any, default: Any, key: str, fail: Any) -> Any:
    """Check `value` against the type of `default` and convert TOML forms to frozen ones."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail(key, f"expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, f"expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(key, f"expected a number of seconds, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise fail(key, f"expected a string, got {value!r}")
        return value
    if key.endswith(".env"):
        if not isinstance(value, Mapping):
            raise fail(key, 'expected a table of NAME = "value"')
        pairs = []
        for name, item in value.items():
            if not isinstance(item, (str, int, float, bool)):
                raise fail(f"{key}.{name}", f"expected a string, got {item!r}")
            pairs.append((str(name), str(item).lower() if isinstance(item, bool) else str(item)))
        return tuple(pairs)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)
    raise fail(key, f"unsupported value {value!r}")  # pragma: no cover - all fields covered
