"""The nginx front door: render the nginx config that routes each path prefix to its group.

``render(config)`` returns the ``upstream`` and ``server`` blocks that go into nginx's
``conf.d/`` (included inside ``http {}``); ``full=True`` wraps them in a complete ``nginx.conf``
whose every file (pid, logs, temp directories) is relative to nginx's prefix, so
``nginx -p DIR -c DIR/nginx.conf`` runs it without root and without touching /var or /run.
Pure text generation: nothing is read or written here.
"""

from __future__ import annotations

import math
import os
import re

from aioworker.config import Config, ConfigError, GroupSettings, parse_listen

__all__ = ["location_match", "render", "upstream_servers"]

# Seconds nginx waits for a response beyond the group's own deadline, so that the app's 504
# (written by the engine when request_timeout expires) reaches the client instead of nginx's.
# proxy_read_timeout is the longest gap between two reads from the group: before the head that
# is request_timeout, within a stream stream_idle_timeout; the larger of the two is covered.
_DEADLINE_MARGIN = 5
# A timeout of 0 means none; nginx has no "never", so one day stands in for it.
_NO_DEADLINE = 86400
# Idle connections each nginx worker keeps per upstream. Each one holds a connection slot in an
# aioworker worker (max_connections defaults to 1024), so a few dozen is plenty for reuse.
_KEEPALIVE_CONNECTIONS = 64
_HOST = re.compile(r"([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9/._~%+,:=@!*()-]+")
# nginx routes on the normalized path (%XX decoded, dot segments resolved) but proxy_pass without
# a URI passes the target as the client sent it. A target with dot segments is then routed by one
# path and served by another: /task/sleep/../../x (or /task/%2e%2e/x) goes to the fast group,
# whose app sees /task/sleep/../../x, which a framework's /task/{rest:path} route serves there.
# Browsers never send dot segments, so every form of them is refused.
_DOT_SEGMENT = r"^[^?]*(/|%2f)(\.|%2e){1,2}(/|%2f|\?|$)"

_TYPES = """\
        text/html                  html htm;
        text/css                   css;
        text/plain                 txt;
        text/javascript            js mjs;
        application/json           json map;
        application/wasm           wasm;
        application/pdf            pdf;
        image/svg+xml              svg;
        image/png                  png;
        image/jpeg                 jpg jpeg;
        image/gif                  gif;
        image/webp                 webp;
        image/x-icon               ico;
        font/woff2                 woff2;
        font/woff                  woff;
"""


def render(
    config: Config,
    *,
    listen: str = "80",
    server_name: str = "_",
    static_root: str | None = None,
    full: bool = False,
) -> str:
    """The nginx config for `config`: conf.d blocks, or a whole nginx.conf with ``full``."""
    for name, value in (("listen", listen), ("server_name", server_name)):
        if not value.strip() or any(c in value for c in ";{}\"'#\n"):
            raise ConfigError(
                f"--{name.replace('_', '-')}: {value!r} is empty or holds ; {{ }} quotes or #"
            )
    default = config.default_group
    if default is None:
        raise ConfigError(f"{_where(config)}: groups: no group has listen; nothing to proxy to")
    serving = [g for g in config.groups if g.listen]
    everything = [g.name for g in serving if "/" in g.routes]
    if len(everything) > 1:
        raise ConfigError(
            f"{_where(config)}: groups.{everything[1]}.routes: '/' is also routed to "
            f"groups.{everything[0]}; only one group can take every other path"
        )
    names = _upstream_names(serving)

    lines = [
        f"# nginx front door for aioworker, from {_where(config)}",
        "# (`python -m aioworker nginx`). Regenerate it when groups, routes or ports change.",
        "",
        "# Host as the client sent it (with its port); $host when the client sent none (HTTP/1.0).",
        "map $http_host $aioworker_host {",
        '    ""      $host;',
        "    default $http_host;",
        "}",
        "",
        "# WebSocket handshakes: Connection: upgrade goes to a group only with an Upgrade",
        "# header; plain requests send an empty Connection and keep the group connections alive.",
        "map $http_upgrade $aioworker_connection {",
        "    default upgrade;",
        '    ""      "";',
        "}",
        "",
    ]
    for group in serving:
        if not group.routes and group is not default:
            lines.append(
                f"# group {group.name} has no routes and {default.name} takes every other "
                "path: nginx sends it nothing (it is reached on its own port only)"
            )
        lines += _upstream(group, names[group.name], _where(config))
    lines += _server(config, serving, default, names, listen, server_name, static_root)
    text = "\n".join(lines) + "\n"
    return _full(text) if full else text


def upstream_servers(group: GroupSettings, where: str = "<config>") -> list[str]:
    """The ``server`` addresses of a group: its ``hosts`` if set, else its own listen address."""
    if group.hosts:
        for host in group.hosts:
            # Written into nginx's config as is: a ; or a brace would end or inject a directive.
            if not _HOST.fullmatch(host):
                raise ConfigError(
                    f"{where}: groups.{group.name}.hosts: {host!r} is not HOST:PORT "
                    "(a name, an IPv4 address or an [IPv6] address, then :PORT)"
                )
        return list(group.hosts)
    address = parse_listen(group.listen)
    if address.is_unix:
        return [f"unix:{address.path}"]
    if address.port == 0:
        raise ConfigError(
            f"{where}: groups.{group.name}.listen: {group.listen} has port 0 (any free port); "
            "the front proxy needs a fixed port, or set hosts"
        )
    host = address.host
    # A wildcard listener is reached on the loopback address of the same family.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return [f"{host}:{address.port}"]


def location_match(route: str) -> list[str]:
    """The nginx ``location`` arguments for one route prefix.

    nginx picks the longest matching *string* prefix, so ``location /task`` would also take
    ``/taskforce``. A route ``/task`` therefore becomes ``location /task/`` (everything below it)
    plus ``location = /task`` (the bare path; without it nginx would answer ``/task`` with a
    301 to ``/task/``, its special case for proxied prefixes ending in a slash). A route that
    already ends in ``/`` is used as is. aioworker's strict_routes matches the same way.
    """
    if route.endswith("/"):
        return [_quote(route)]
    return [_quote(route + "/"), f"= {_quote(route)}"]


def _where(config: Config) -> str:
    return str(config.path) if config.path is not None else "<config>"


def _upstream_names(groups: list[GroupSettings]) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for group in groups:
        base = "aioworker_" + re.sub(r"[^A-Za-z0-9_]", "_", group.name)
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names[group.name] = name
    return names


def _upstream(group: GroupSettings, name: str, where: str) -> list[str]:
    servers = upstream_servers(group, where)
    where = ", ".join(group.hosts) if group.hosts else group.listen
    lines = [f"# group {group.name}: {group.workers} worker(s) per machine on {where}"]
    lines.append(f"upstream {name} {{")
    lines += [f"    server {server};" for server in servers]
    idle_ms = _upstream_idle_ms(group.http.keepalive_timeout)
    if idle_ms > 0:
        lines += [
            f"    keepalive {_KEEPALIVE_CONNECTIONS};",
            # aioworker closes a connection idle for keepalive_timeout. If nginx reuses one at
            # that very moment, its request crosses the server's FIN: nginx gets a reset or an
            # empty reply and answers 502 (it retries idempotent requests on a fresh connection,
            # never a POST). Closing idle connections first, on nginx's side, removes the race.
            f"    keepalive_timeout {idle_ms}ms;  # < keepalive_timeout "
            f"{_seconds(group.http.keepalive_timeout)}s of the group",
        ]
    lines += ["}", ""]
    return lines


def _upstream_idle_ms(keepalive_timeout: float) -> int:
    """nginx's idle timeout for upstream connections: a safe margin below aioworker's."""
    ms = keepalive_timeout * 1000
    margin = 1000 if ms > 2000 else ms / 2
    return math.floor(ms - margin)


def _server(
    config: Config,
    serving: list[GroupSettings],
    default: GroupSettings,
    names: dict[str, str],
    listen: str,
    server_name: str,
    static_root: str | None,
) -> list[str]:
    lines = [
        "server {",
        f"    listen {listen};",
        f"    server_name {server_name};",
        "",
        "    proxy_http_version 1.1;           # keep-alive and WebSockets to the groups",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $aioworker_connection;  # never the client's close",
        "    proxy_set_header Host $aioworker_host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    # nginx passes a client's Forwarded header through untouched, and the groups trust",
        "    # this proxy's headers (forwarded_allow_ips): one it does not write must not pass.",
        '    proxy_set_header Forwarded "";',
        "    proxy_connect_timeout 5s;         # a dead machine in hosts fails over quickly",
        "",
        "    # Routing and the app must see the same path (see aioworker/frontdoor/nginx.py).",
        f'    if ($request_uri ~* "{_DOT_SEGMENT}") {{',
        "        return 400;",
        "    }",
    ]
    if static_root is not None:
        lines += [
            "",
            "    # Files under the static root are served by nginx; other paths go to the app.",
            f"    root {_quote(os.path.abspath(static_root))};",
        ]

    claimed: dict[str, str] = {}
    explained = False
    for group in serving:
        for route in sorted(set(group.routes)):
            if route == "/":
                continue
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in route):
                raise ConfigError(
                    f"{_where(config)}: groups.{group.name}.routes: {route!r} has a control "
                    "character"
                )
            lines.append("")
            if not route.endswith("/") and not explained:
                explained = True
                lines += [
                    f"    # Route {route} of group {group.name}: 'location {route}/' takes the",
                    f"    # paths below it, 'location = {route}' the bare path; a plain",
                    f"    # 'location {route}' would also take {route}force (string prefixes).",
                ]
            else:
                lines.append(f"    # Route {route} of group {group.name}.")
            for match in location_match(route):
                other = claimed.get(match)
                if other is not None and other != group.name:
                    raise ConfigError(
                        f"{_where(config)}: groups.{group.name}.routes: {route!r} is also "
                        f"routed to groups.{other}"
                    )
                if other is None:
                    claimed[match] = group.name
                    lines += _location(match, group, names[group.name])

    upstream = names[default.name]
    lines.append("")
    lines.append(f"    # Every other path: the default group, {default.name}.")
    if static_root is not None:
        lines += [
            "    location / {",
            f"        try_files $uri @{upstream};",
            # The body limit is checked in the location first matched, before try_files.
            f"        client_max_body_size {default.http.max_body_bytes};",
            "    }",
            f"    location @{upstream} {{",
            *_proxy(default, upstream),
            "    }",
        ]
    else:
        lines += _location("/", default, upstream)
    lines.append("}")
    return lines


def _location(match: str, group: GroupSettings, upstream: str) -> list[str]:
    return [f"    location {match} {{", *_proxy(group, upstream), "    }"]


def _proxy(group: GroupSettings, upstream: str) -> list[str]:
    http = group.http
    head, idle = http.request_timeout, http.stream_idle_timeout
    deadline = max(head, idle) if head > 0 and idle > 0 else 0
    read = math.ceil(deadline) + _DEADLINE_MARGIN if deadline > 0 else _NO_DEADLINE
    why = ">= request_timeout, stream_idle_timeout"
    if http.ws_ping_interval > 0:
        # On a WebSocket nginx's read timeout is the longest silence it allows from the group;
        # the group's keepalive pings break the silence every ws_ping_interval (plus the wait
        # for the pong), so an idle WebSocket stays open. Without pings nginx closes it.
        pings = math.ceil(http.ws_ping_interval + http.ws_ping_timeout) + _DEADLINE_MARGIN
        if pings > read:
            read = pings
            why = f"> ws_ping_interval + ws_ping_timeout {_seconds(pings - _DEADLINE_MARGIN)}s"
    body = http.max_body_bytes  # nginx's default (1m) would refuse bodies the group takes
    # An https:// group is proxied over TLS (nginx does not verify upstream certificates
    # unless told to with proxy_ssl_verify).
    address = group.address
    scheme = "https" if address is not None and address.tls else "http"
    return [
        f"        proxy_pass {scheme}://{upstream};",
        f"        proxy_read_timeout {read}s;   # {why}",
        f"        proxy_send_timeout {read}s;",
        f"        client_max_body_size {body};",
    ]


def _seconds(value: float) -> str:
    return f"{value:g}"


def _quote(text: str) -> str:
    if _SAFE_TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _full(blocks: str) -> str:
    """A complete nginx.conf around `blocks`; every relative path is under nginx's prefix (-p)."""
    inner = "".join(f"    {line}\n" if line else "\n" for line in blocks.splitlines())
    return (
        "# Complete nginx.conf for aioworker. Every relative path below is under nginx's prefix:\n"
        "#   nginx -p DIR -c DIR/nginx.conf          (add -g 'daemon off;' to run in foreground)\n"
        "worker_processes auto;\n"
        "pid nginx.pid;\n"
        "error_log error.log warn;\n"
        "\n"
        "events {\n"
        "    # Two per proxied request (client and upstream); 1024 stays within the usual\n"
        "    # open-file limit, so nginx needs no root to raise it.\n"
        "    worker_connections 1024;\n"
        "}\n"
        "\n"
        "http {\n"
        "    access_log access.log;\n"
        "    client_body_temp_path client_body_temp;\n"
        "    proxy_temp_path proxy_temp;\n"
        "    fastcgi_temp_path fastcgi_temp;\n"
        "    uwsgi_temp_path uwsgi_temp;\n"
        "    scgi_temp_path scgi_temp;\n"
        "    server_tokens off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        "    types {\n" + _TYPES + "    }\n"
        "\n" + inner + "}\n"
    )
