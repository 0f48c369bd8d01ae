"""Configuration: one frozen dataclass per section, built from config.toml, the CLI or code.

Every setting is defined once, here, with its default and a one-line doc (the field's
``metadata["doc"]``). ``load(path)`` validates the whole file before anything starts and names
``file: table.key: problem`` on every error; unknown keys are errors with a suggestion.
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

__all__ = [
    "Config",
    "ConfigError",
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "MetricsSettings",
    "ServerSettings",
    "load",
    "parse_listen",
]


class ConfigError(ValueError):
    """A configuration problem, phrased as ``file: table.key: problem``."""


def _f(default: Any, doc: str) -> Any:
    """A dataclass field with a default and a one-line doc kept in its metadata."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in frozen settings")
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Engine limits and timeouts: set in [server] for every group, overridable per group."""

    max_url_bytes: int = _f(8192, "longest request target accepted; longer gets 414")
    max_header_bytes: int = _f(16384, "largest request line plus header section; larger gets 431")
    max_headers: int = _f(100, "most header fields in one request; more gets 431")
    max_body_bytes: int = _f(
        64 * 1024 * 1024, "largest request body; larger gets 413 (0 = unlimited)"
    )
    header_timeout: float = _f(
        10.0, "seconds a client may take to send a full request head; then 408 and close"
    )
    body_timeout: float = _f(
        30.0, "seconds a request body may stay idle while the app waits for it; then close"
    )
    keepalive_timeout: float = _f(5.0, "seconds an idle keep-alive connection is kept open")
    request_timeout: float = _f(
        60.0, "deadline for one request in seconds: the app is cancelled, 504 (0 = none)"
    )
    max_connections: int = _f(
        1024, "open connections per worker; beyond it new ones are closed at once"
    )
    max_requests_in_progress: int = _f(
        256, "requests running per worker; beyond it an immediate 503 with Retry-After"
    )
    graceful_timeout: float = _f(
        30.0, "seconds requests in progress may take to finish on stop or reload"
    )
    high_water: int = _f(65536, "request body bytes buffered for the app before reading pauses")
    server_header: str = _f("aioworker", "Server header value ('' sends none)")
    access_log: bool = _f(False, "log one line per request (costs throughput)")
    forwarded_allow_ips: tuple[str, ...] = _f(
        ("127.0.0.1",), "peers (addresses or CIDRs) whose X-Forwarded-*/Forwarded are trusted"
    )
    root_path: str = _f("", "ASGI root_path for apps mounted below a prefix")


@dataclass(frozen=True, slots=True)
class Listen:
    """Where a group accepts connections: TCP host and port, or a unix socket path."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """Parse ``http://HOST:PORT`` or ``unix:PATH``; raise ValueError with the reason."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path, as in unix:/run/app.sock")
        return Listen(path=path)
    if not value.startswith("http://"):
        raise ValueError(f"{value!r} is neither http://HOST:PORT nor unix:PATH")
    rest = value[len("http://") :].rstrip("/")
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
    else:
        host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} has no port; write http://HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is out of range 0-65535")
    return Listen(host=host, port=port)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The [server] table: the master's own settings."""

    pid_file: str = _f(
        "aioworker.pid", "pid file of the master, relative to the config file ('' = none)"
    )
    control_socket: str = _f(
        "aioworker.sock", "unix socket (mode 0600) the CLI uses to talk to the master"
    )
    log_level: str = _f("info", "debug, info, warning, error or critical")
    log_file: str = _f("", "log file; used in daemon mode (-d), stderr otherwise")
    user: str = _f("", "default user the workers run as when started as root")
    group: str = _f("", "default group the workers run as when started as root")
    watch: tuple[str, ...] = _f((), "paths whose .py files trigger a rolling reload on change")
    # HttpSettings is frozen, so one shared default instance is safe.
    http: HttpSettings = _f(HttpSettings(), "engine limits and timeouts for every group")  # noqa: RUF009


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """One [groups.NAME] table: a set of identical workers."""

    name: str = _f("web", "the table name, as in [groups.web]")
    app: str = _f("", "ASGI app as 'pkg.module:attr'")
    factory: bool = _f(False, "call app() to build the app in each worker")
    main: str = _f("", "coroutine function 'pkg.module:fn' run instead of a server (no listen)")
    listen: str = _f("", "http://HOST:PORT or unix:PATH")
    count: int = _f(0, "workers in the group (0 = the number of CPUs)")
    reuse_port: bool = _f(True, "one SO_REUSEPORT socket per worker instead of one shared")
    user: str = _f("", "user to run as (default: [server] user)")
    group: str = _f("", "group to run as (default: [server] group)")
    routes: tuple[str, ...] = _f((), "path prefixes this group serves behind the front proxy")
    reloadable: bool = _f(True, "whether reload replaces this group's workers")
    preload: bool = _f(False, "import the app in the master before forking")
    env: tuple[tuple[str, str], ...] = _f((), "environment variables set in each worker")
    timeout: float = _f(30.0, "seconds the event loop may stay blocked before kill (0 = never)")
    soft_timeout: float = _f(
        0.0, "seconds blocked before the stack is logged once, without killing (0 = off)"
    )
    start_timeout: float = _f(
        60.0, "seconds a new worker may take to import the app and become ready"
    )
    max_requests: int = _f(0, "recycle a worker after this many requests (0 = never)")
    max_requests_jitter: int = _f(0, "random 0..N added to max_requests per worker")
    max_rss_mb: int = _f(0, "recycle a worker whose memory stays above this (0 = no limit)")
    strict_routes: bool = _f(False, "answer 404 for paths outside routes")
    hosts: tuple[str, ...] = _f((), "HOST:PORT of every machine running this group (front proxy)")
    http: HttpSettings = _f(HttpSettings(), "engine limits and timeouts")  # noqa: RUF009

    @property
    def workers(self) -> int:
        """The effective worker count."""
        return self.count or (os.cpu_count() or 1)

    @property
    def address(self) -> Listen | None:
        """The parsed listen address, or None for a `main` group."""
        return parse_listen(self.listen) if self.listen else None

    @property
    def is_default(self) -> bool:
        return not self.routes or "/" in self.routes


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The [metrics] table: Prometheus metrics and health checks served by the master."""

    listen: str = _f("", "http://HOST:PORT for /metrics, /healthz and /readyz ('' = off)")


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: what the master runs."""

    server: ServerSettings = field(default_factory=ServerSettings)
    groups: tuple[GroupSettings, ...] = ()
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        """Directory relative paths are resolved from: the config file's, else the cwd."""
        return self.path.parent if self.path is not None else Path.cwd()

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve() if relative else Path()

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
    ) -> Config:
        """One group serving `app`: what `aioworker serve APP` and simple embeddings use."""
        http = http or HttpSettings()
        group = GroupSettings(
            name="web", app=app, listen=listen, count=count, factory=factory, http=http
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

    _check_keys(data, {"server": None, "groups": None, "metrics": None}, "", fail)

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
    config = Config(server=server, groups=tuple(groups), metrics=metrics, path=path)
    validate(config, where)
    return config


def validate(config: Config, where: str = "<config>") -> None:
    """Cross-field checks shared by files, the CLI and code: raise ConfigError."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {problem}")

    if not config.groups:
        raise fail("groups", "no groups defined; add at least one [groups.NAME] table")
    if config.server.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
        raise fail("server.log_level", f"{config.server.log_level!r} is not a log level")
    _validate_http(config.server.http, "server", fail)
    ports: dict[tuple[str, int | str], str] = {}
    for group in config.groups:
        prefix = f"groups.{group.name}"
        _validate_http(group.http, prefix, fail)
        if group.listen and group.main:
            raise fail(f"{prefix}.main", "a group has either listen (with app) or main, not both")
        if not group.listen and not group.main:
            raise fail(prefix, "needs listen and app (a server) or main (a coroutine)")
        if group.listen:
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
        else:
            _check_import_string(group.main, f"{prefix}.main", fail)
        if group.count < 0:
            raise fail(f"{prefix}.count", "must be 0 (one per CPU) or more")
        for name in ("timeout", "soft_timeout"):
            if getattr(group, name) < 0:
                raise fail(f"{prefix}.{name}", "must be 0 (off) or more")
        if group.start_timeout <= 0:
            raise fail(f"{prefix}.start_timeout", "must be more than 0 seconds")
        for name in ("max_requests", "max_requests_jitter", "max_rss_mb"):
            if getattr(group, name) < 0:
                raise fail(f"{prefix}.{name}", "must be 0 (off) or more")
        for route in group.routes:
            if not route.startswith("/"):
                raise fail(f"{prefix}.routes", f"{route!r} must start with '/'")
        for host in group.hosts:
            _, sep, port = host.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
                raise fail(f"{prefix}.hosts", f"{host!r} is not HOST:PORT")
    if config.metrics.listen:
        try:
            parse_listen(config.metrics.listen)
        except ValueError as exc:
            raise fail("metrics.listen", str(exc)) from None


def _validate_http(http: HttpSettings, prefix: str, fail: Any) -> None:
    for f in dataclasses.fields(HttpSettings):
        value = getattr(http, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise fail(f"{prefix}.{f.name}", "must not be negative")
    for name in (
        "max_url_bytes",
        "max_header_bytes",
        "max_headers",
        "max_connections",
        "max_requests_in_progress",
        "high_water",
    ):
        if getattr(http, name) < 1:
            raise fail(f"{prefix}.{name}", "must be at least 1")
    for name in ("header_timeout", "keepalive_timeout"):
        if getattr(http, name) <= 0:
            raise fail(f"{prefix}.{name}", "must be more than 0 seconds")
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


def _check_import_string(value: str, key: str, fail: Any) -> None:
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise fail(key, f"{value!r} must be 'pkg.module:attribute'")


def _table(data: Mapping[str, Any], name: str, fail: Any) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise fail(name, "must be a table")
    return table


def _check_keys(table: Mapping[str, Any], known: Mapping[str, Any], prefix: str, fail: Any) -> None:
    for key in table:
        if key not in known:
            full = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
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
