"""The settings dataclasses: one frozen dataclass per config.toml section, each field once.

Every setting is defined here with its default and a one-line doc (the field's
``metadata["doc"]``); `aioworker.config.loading` loads files into these, and the CLI's flags,
the reference docs and code all use the same definitions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "MetricsSettings",
    "ServerSettings",
    "parse_listen",
]


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
