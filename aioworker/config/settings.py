"""The settings dataclasses: one frozen dataclass per config.toml section, each field once.

Every setting is defined here, once, with its default and a `Meta` (read it with `meta(field)`):
a one-line doc, the allowed choices, the lower bound and what 0 means, and whether a change
needs a master restart rather than a reload (HUP). `aioworker.config.loading` validates files
against these, `aioworker.cli.arguments` builds the `serve` flags from them,
`aioworker.config.reference` renders docs/configuration.md and config.toml's comments from
them, and `aioworker.config.changes` compares two configs with them.

Which keys need a restart follows what `aioworker.supervisor.reloading` can apply: a reload
replaces each group's workers with new ones forked from the running master, so whatever a new
worker reads (app, limits, env, timeouts, count) applies; what the master set up once at start
(listeners, pid file, control socket, privileges, apps imported before forking with preload)
does not. The master itself re-applies `log_level`, `log_file`, `watch` and `[metrics] listen`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LOG_LEVELS",
    "GroupSettings",
    "HttpSettings",
    "Listen",
    "Meta",
    "MetricsSettings",
    "QueueSettings",
    "ServerSettings",
    "meta",
    "parse_listen",
]

# The names logging accepts (upper-cased) for [server] log_level, `serve --log-level` and run().
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Meta:
    """What is known about one setting besides its default and type."""

    doc: str  # one line, without the meaning of 0 (that is `zero`)
    choices: tuple[str, ...] = ()  # allowed values (compared case-insensitively), () = any
    minimum: float | None = None  # lowest allowed value
    above: float | None = None  # the value must be more than this
    zero: str = ""  # what 0 means, as in "(0 = off)"
    restart: bool = False  # a change needs a master restart; a reload keeps the old value
    restart_if: str = ""  # ... only while this boolean field of the same table is true

    @property
    def text(self) -> str:
        """The doc with the meaning of 0, as the docs, config.toml and --help show it."""
        return f"{self.doc} (0 = {self.zero})" if self.zero else self.doc


def meta(f: dataclasses.Field[Any]) -> Meta:
    """The `Meta` of a settings field."""
    found: Meta = f.metadata["meta"]
    return found


def _f(default: Any, doc: str, **extra: Any) -> Any:
    """A dataclass field with a default and its `Meta` (doc, choices, bounds, restart)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in frozen settings")
    return field(default=default, metadata={"meta": Meta(doc, **extra)})


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Engine limits and timeouts: set in [server] for every group, overridable per group."""

    max_url_bytes: int = _f(8192, "longest request target accepted; longer gets 414", minimum=1)
    max_header_bytes: int = _f(
        16384, "largest request line plus header section; larger gets 431", minimum=1
    )
    max_headers: int = _f(100, "most header fields in one request; more gets 431", minimum=1)
    max_body_bytes: int = _f(
        64 * 1024 * 1024, "largest request body; larger gets 413", minimum=0, zero="unlimited"
    )
    header_timeout: float = _f(
        10.0, "seconds a client may take to send a full request head; then 408 and close", above=0
    )
    body_timeout: float = _f(
        30.0,
        "seconds a request body may stay idle while the app waits for it; then close",
        minimum=0,
    )
    keepalive_timeout: float = _f(
        5.0, "seconds an idle keep-alive connection is kept open", above=0
    )
    # A deadline to the head only: a response that has started is bounded by the two below, so
    # server-sent events and long downloads live as long as they make progress.
    request_timeout: float = _f(
        60.0,
        "seconds the app may take to start its response (send its head); then it is cancelled, 504",
        minimum=0,
        zero="none",
    )
    send_timeout: float = _f(
        60.0,
        "seconds a response may stay blocked on a client that does not read (writing paused); "
        "then the connection is closed",
        minimum=0,
        zero="none",
    )
    stream_idle_timeout: float = _f(
        60.0,
        "seconds a started response may go without the app sending any body bytes; then the "
        "app is cancelled and the connection closed",
        minimum=0,
        zero="none",
    )
    max_connections: int = _f(
        1024,
        "open connections per worker; a new one beyond it first evicts the oldest connection "
        "that is idle or has not sent a whole request head, else gets 503 and close",
        minimum=1,
    )
    max_connections_per_client: int = _f(
        256,
        "open connections per worker from one client address (trusted proxies exempt); "
        "beyond it 503 and close",
        minimum=0,
        zero="no limit",
    )
    max_requests_in_progress: int = _f(
        256, "requests running per worker; beyond it an immediate 503 with Retry-After", minimum=1
    )
    graceful_timeout: float = _f(
        30.0, "seconds requests in progress may take to finish on stop or reload", minimum=0
    )
    high_water: int = _f(
        65536, "request body bytes buffered for the app before reading pauses", minimum=1
    )
    server_header: str = _f("aioworker", "Server header value ('' sends none)")
    access_log: bool = _f(False, "log one line per request (costs throughput)")
    access_log_format: str = _f(
        "default",
        "the access log line: default, common, combined, or a template of named fields "
        "(docs/observability.md)",
    )
    forwarded_allow_ips: tuple[str, ...] = _f(
        ("127.0.0.1",), "peers (addresses or CIDRs) whose X-Forwarded-*/Forwarded are trusted"
    )
    root_path: str = _f("", "ASGI root_path for apps mounted below a prefix")
    ws_max_message_bytes: int = _f(
        16 * 1024 * 1024,
        "largest WebSocket message accepted (after decompression); larger closes with 1009",
        minimum=1,
    )
    ws_max_queue: int = _f(
        32, "WebSocket messages queued for the app before reading from the client pauses", minimum=1
    )
    ws_ping_interval: float = _f(
        20.0, "seconds between keepalive pings on an open WebSocket", minimum=0, zero="no pings"
    )
    ws_ping_timeout: float = _f(
        20.0,
        "seconds a keepalive ping may go unanswered; then close with 1011",
        minimum=0,
        zero="no limit",
    )
    ws_per_message_deflate: bool = _f(True, "accept permessage-deflate compression (RFC 7692)")


@dataclass(frozen=True, slots=True)
class Listen:
    """Where a group accepts connections: TCP host and port, or a unix socket path."""

    host: str = "127.0.0.1"
    port: int = 0
    path: str = ""
    tls: bool = False  # https://

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    """Parse ``http://HOST:PORT``, ``https://HOST:PORT`` or ``unix:PATH``; raise ValueError
    with the reason."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path, as in unix:/run/app.sock")
        return Listen(path=path)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"{value!r} is neither http://HOST:PORT, https://HOST:PORT nor unix:PATH")
    rest = rest.rstrip("/")
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
    return Listen(host=host, port=port, tls=scheme == "https")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The [server] table: the master's own settings."""

    pid_file: str = _f(
        "aioworker.pid",
        "pid file of the master, relative to the config file ('' = none)",
        restart=True,
    )
    control_socket: str = _f(
        "aioworker.sock",
        "unix socket (mode 0600) the CLI uses to talk to the master ('' = none)",
        restart=True,
    )
    log_level: str = _f("info", "lowest level of the messages logged", choices=LOG_LEVELS)
    log_file: str = _f("", "log file; used in daemon mode (-d), stderr otherwise")
    user: str = _f("", "default user the workers run as when started as root", restart=True)
    group: str = _f("", "default group the workers run as when started as root", restart=True)
    env_file: str = _f(
        "", "env_file of every group, read before the group's own (which wins, as env does)"
    )
    # A reload restarts the file watcher on the new paths (unless `start --watch` set them).
    watch: tuple[str, ...] = _f((), "paths whose .py files trigger a rolling reload on change")
    # HttpSettings is frozen, so one shared default instance is safe.
    http: HttpSettings = _f(HttpSettings(), "engine limits and timeouts for every group")  # noqa: RUF009


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """One [groups.NAME] table: a set of identical workers."""

    name: str = _f("web", "the table name, as in [groups.web]")
    # With preload the new workers are forked from a master that imported the app at start.
    app: str = _f("", "ASGI app as 'pkg.module:attr'", restart_if="preload")
    factory: bool = _f(False, "call app() to build the app in each worker", restart_if="preload")
    main: str = _f(
        "",
        "coroutine function 'pkg.module:fn' run instead of a server (no listen)",
        restart_if="preload",
    )
    # The master binds every listener once, before forking.
    listen: str = _f(
        "", "http://HOST:PORT, https://HOST:PORT (certfile, keyfile) or unix:PATH", restart=True
    )
    count: int = _f(0, "workers in the group", minimum=0, zero="one per CPU")
    # Each new worker reads the TLS files when it starts: a reload serves renewed certificates.
    certfile: str = _f("", "TLS certificate chain (PEM) of an https:// listen")
    keyfile: str = _f("", "TLS private key (PEM) of an https:// listen")
    ca_certs: str = _f(
        "", "CA certificates (PEM): clients must present a certificate they signed ('' = none)"
    )
    ciphers: str = _f("", "OpenSSL cipher list for TLS 1.2 ('' = Python's default)")
    # false, measured (docs/groups.md): a blocked worker simply takes no new connection from
    # the shared queue; with true, the master steers new connections away from blocked workers.
    reuse_port: bool = _f(
        False,
        "one SO_REUSEPORT socket per worker (steered by the master) instead of one shared socket",
        restart=True,
    )
    # Dropping privileges needs a master still running as root.
    user: str = _f("", "user to run as (default: [server] user)", restart=True)
    group: str = _f("", "group to run as (default: [server] group)", restart=True)
    routes: tuple[str, ...] = _f((), "path prefixes this group serves behind the front proxy")
    reloadable: bool = _f(True, "whether reload replaces this group's workers")
    preload: bool = _f(False, "import the app in the master before forking", restart=True)
    env: tuple[tuple[str, str], ...] = _f((), "environment variables set in each worker")
    env_file: str = _f(
        "",
        "file of KEY=VALUE lines added to env (env wins), read as root before the privilege "
        "drop; refused if others can read or write it",
    )
    timeout: float = _f(
        30.0, "seconds the event loop may stay blocked before kill", minimum=0, zero="off"
    )
    soft_timeout: float = _f(
        0.0,
        "seconds blocked before the stack is logged once, without killing",
        minimum=0,
        zero="off",
    )
    start_timeout: float = _f(
        60.0, "seconds a new worker may take to import the app and become ready", above=0
    )
    max_requests: int = _f(0, "recycle a worker after this many requests", minimum=0, zero="off")
    max_requests_jitter: int = _f(0, "random 0..N added to max_requests per worker", minimum=0)
    max_rss_mb: int = _f(0, "recycle a worker whose memory stays above this", minimum=0, zero="off")
    strict_routes: bool = _f(False, "answer 404 for paths outside routes")
    hosts: tuple[str, ...] = _f((), "HOST:PORT of every machine running this group (front proxy)")
    # Queue-fed groups (docs/queue.md): the default group's workers put requests for `routes`
    # on the group's Redis stream; this group's workers pull them, one at a time by default.
    queue: bool = _f(
        False, "fed from the [queue] Redis stream instead of a listener (no listen)", restart=True
    )
    reply_timeout: float = _f(
        30.0,
        "seconds a queued request's client waits for the answer; then 202 with a Location",
        above=0,
    )
    queue_max: int = _f(10000, "pending jobs in the group's stream; beyond it 503", minimum=1)
    visibility_timeout: float = _f(
        60.0, "seconds a job may stay with a silent (dead) worker before another claims it", above=0
    )
    max_attempts: int = _f(
        3, "deliveries of one job before it fails for good (dead-letter list, 502)", minimum=1
    )
    queue_concurrency: int = _f(1, "jobs one queue-fed worker runs at once", minimum=1)
    http: HttpSettings = _f(HttpSettings(), "engine limits and timeouts")  # noqa: RUF009

    @property
    def workers(self) -> int:
        """The effective worker count."""
        return self.count or (os.cpu_count() or 1)

    @property
    def address(self) -> Listen | None:
        """The parsed listen address, or None for a `main` or queue-fed group."""
        return parse_listen(self.listen) if self.listen else None

    @property
    def is_default(self) -> bool:
        return not self.routes or "/" in self.routes


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The [metrics] table: Prometheus metrics and health checks served by the master."""

    # A reload binds a changed listener first and closes the old one only once that worked.
    listen: str = _f("", "http://HOST:PORT for /metrics, /healthz and /readyz ('' = off)")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The [queue] table: the Redis that queue-fed groups share (docs/queue.md)."""

    url: str = _f(
        "",
        "the Redis (or Valkey) holding the queues: redis://[:PASSWORD@]HOST:PORT/DB, "
        "rediss:// for TLS, unix://PATH?db=DB ('' = none)",
    )
    consume: bool = _f(
        True, "run the queue-fed groups' workers here (false: this host only enqueues)"
    )
    max_body_bytes: int = _f(
        1024 * 1024, "largest request body put on a queue; larger gets 413", minimum=1
    )
    result_ttl: float = _f(
        3600.0, "seconds a finished job's response stays fetchable at its Location", above=0
    )
    idempotency_ttl: float = _f(
        86400.0, "seconds an Idempotency-Key keeps returning the same job", above=0
    )
    retry_after: int = _f(
        1, "Retry-After seconds sent with 503 when Redis is down or a queue is full", minimum=0
    )
    cancel_on_disconnect: bool = _f(
        False, "drop a job whose client went away before a worker took it"
    )
