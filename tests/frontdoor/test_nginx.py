"""The generated nginx config: its text, `nginx -t`, and routing through a real nginx."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from aioworker.config import Config, ConfigError, from_dict, load
from aioworker.frontdoor.nginx import location_match, render
from tests.helpers.client import request
from tests.helpers.nginx import NGINX, free_port, nginx_prefix, nginx_test, running_nginx

ROOT = Path(__file__).resolve().parents[2]


def config(groups: dict[str, dict[str, Any]], **server: Any) -> Config:
    tables = {
        name: {"app": "examples.app:app", "count": 1, **table} for name, table in groups.items()
    }
    return from_dict({"server": server, "groups": tables})


def two_groups(web_port: int = 8000, task_port: int = 8001, **task: Any) -> Config:
    return config(
        {
            "web": {"listen": f"http://127.0.0.1:{web_port}", "routes": ["/"]},
            "task": {"listen": f"http://127.0.0.1:{task_port}", "routes": ["/task"], **task},
        }
    )


def check_with_nginx(text: str, full: bool) -> None:
    """`nginx -t` on a full config, or on conf.d blocks included as nginx.conf would, in a
    fresh prefix."""
    with nginx_prefix() as prefix:
        conf = prefix / "nginx.conf"
        if full:
            conf.write_text(text)
        else:
            (prefix / "aioworker.conf").write_text(text)
            conf.write_text(
                "pid nginx.pid;\nerror_log error.log;\nevents {}\n"
                "http {\n  client_body_temp_path body;\n  proxy_temp_path proxy;\n"
                "  fastcgi_temp_path fastcgi;\n  uwsgi_temp_path uwsgi;\n  scgi_temp_path scgi;\n"
                f"  include {prefix / 'aioworker.conf'};\n}}\n"
            )
        result = nginx_test(conf)
    assert result.returncode == 0, result.stderr + "\n" + text


def locations(text: str) -> dict[str, str]:
    """location argument -> the upstream it proxies to."""
    found = re.findall(r"^ *location ([^{\n]+?) \{\s*proxy_pass http://(\w+);", text, re.M)
    return dict(found)


# ----------------------------------------------------------------------------- text


def test_shipped_config() -> None:
    text = render(load(ROOT / "config.toml"))
    assert "upstream aioworker_web {\n    server 127.0.0.1:8000;\n    keepalive 64;" in text
    assert "upstream aioworker_task {\n    server 127.0.0.1:8001;" in text
    assert locations(text) == {
        "/task/": "aioworker_task",
        "= /task": "aioworker_task",
        "/": "aioworker_web",
    }
    for line in (
        "listen 80;",
        "server_name _;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $aioworker_connection;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header Host $aioworker_host;",
        # The task group's deadline is 300 s, the web group's the default 60 s.
        "proxy_read_timeout 305s;",
        "proxy_read_timeout 65s;",
        # Shorter than the groups' keepalive_timeout of 5 s.
        "keepalive_timeout 4000ms;",
    ):
        assert line in text, line


@pytest.mark.parametrize("full", [False, True], ids=["conf.d", "full"])
def test_shipped_config_passes_nginx_t(full: bool) -> None:
    text = render(load(ROOT / "config.toml"), listen=f"127.0.0.1:{free_port()}", full=full)
    check_with_nginx(text, full)


@pytest.mark.parametrize(
    ("route", "matches"),
    [
        pytest.param("/task", ["/task/", "= /task"], id="bare"),
        pytest.param("/task/", ["/task/"], id="slash"),
        pytest.param("/my dir", ['"/my dir/"', '= "/my dir"'], id="quoted"),
        pytest.param('/a"b', ['"/a\\"b/"', '= "/a\\"b"'], id="escaped-quote"),
    ],
)
def test_location_match(route: str, matches: list[str]) -> None:
    assert location_match(route) == matches


@pytest.mark.parametrize(
    ("keepalive", "upstream_line"),
    [
        pytest.param(5.0, "keepalive_timeout 4000ms;", id="default"),
        pytest.param(75.0, "keepalive_timeout 74000ms;", id="long"),
        pytest.param(1.5, "keepalive_timeout 750ms;", id="short-halved"),
        pytest.param(0.001, None, id="too-short-no-pool"),
    ],
)
def test_upstream_keepalive_shorter_than_the_groups(
    keepalive: float, upstream_line: str | None
) -> None:
    text = render(two_groups(keepalive_timeout=keepalive))
    task = text[text.index("upstream aioworker_task") :]
    task = task[: task.index("}")]
    if upstream_line is None:
        assert "keepalive" not in task
    else:
        assert upstream_line in task
        assert "keepalive 64;" in task


@pytest.mark.parametrize(
    ("timeouts", "read"),
    [
        pytest.param({}, "65s", id="default"),
        pytest.param(
            {"request_timeout": 2.5, "stream_idle_timeout": 1.0, "ws_ping_interval": 0.0},
            "8s",
            id="rounded-up",
        ),
        pytest.param({"request_timeout": 0.0}, "86400s", id="no-head-deadline"),
        pytest.param({"stream_idle_timeout": 300.0}, "305s", id="longer-stream-gaps"),
        pytest.param({"stream_idle_timeout": 0.0}, "86400s", id="no-idle-bound"),
        # An idle WebSocket hears a ping every 20 s (answered within 20 s): nginx must wait.
        pytest.param(
            {"request_timeout": 2.5, "stream_idle_timeout": 1.0}, "45s", id="websocket-pings"
        ),
        pytest.param(
            {"request_timeout": 2.5, "stream_idle_timeout": 1.0, "ws_ping_interval": 7.5},
            "33s",
            id="websocket-pings-fraction",
        ),
    ],
)
def test_read_timeout_covers_the_engines_deadlines(timeouts: dict[str, Any], read: str) -> None:
    """nginx waits as long as the group would between two reads: for the head, in a stream,
    and between the keepalive pings of an idle WebSocket."""
    text = render(two_groups(**timeouts))
    block = text[text.index("location /task/") :]
    assert f"proxy_read_timeout {read};" in block[: block.index("}")]


def test_body_limit_follows_the_group() -> None:
    text = render(two_groups(max_body_bytes=0))
    task = text[text.index("location /task/") :]
    assert "client_max_body_size 0;" in task[: task.index("}")]
    web = text[text.index("location / {") :]
    assert "client_max_body_size 67108864;" in web


def test_hosts_and_unix_sockets() -> None:
    cfg = config(
        {
            "web": {"listen": "unix:/run/aioworker/web.sock"},
            "task": {
                "listen": "http://0.0.0.0:8001",
                "routes": ["/task", "/report/"],
                "hosts": ["127.0.0.1:9001", "localhost:9002", "[::1]:9003"],
            },
            "v6": {"listen": "http://[::]:8002", "routes": ["/v6"]},
            "any": {"listen": "http://0.0.0.0:8003", "routes": ["/any"]},
        }
    )
    text = render(cfg, server_name="example.com www.example.com", listen="127.0.0.1:8080")
    assert "upstream aioworker_web {\n    server unix:/run/aioworker/web.sock;" in text
    assert (
        "upstream aioworker_task {\n    server 127.0.0.1:9001;\n    server localhost:9002;\n"
        "    server [::1]:9003;" in text
    )
    assert "server [::1]:8002;" in text
    assert "server 127.0.0.1:8003;" in text
    assert "server_name example.com www.example.com;" in text
    assert locations(text) == {
        "/report/": "aioworker_task",
        "/task/": "aioworker_task",
        "= /task": "aioworker_task",
        "/v6/": "aioworker_v6",
        "= /v6": "aioworker_v6",
        "/any/": "aioworker_any",
        "= /any": "aioworker_any",
        "/": "aioworker_web",
    }
    check_with_nginx(text, False)


def test_nested_routes_and_odd_group_names() -> None:
    cfg = config(
        {
            "site": {"listen": "http://127.0.0.1:8000"},
            "api": {"listen": "http://127.0.0.1:8001", "routes": ["/api"]},
            "api-slow": {"listen": "http://127.0.0.1:8002", "routes": ["/api/export", "/my dir"]},
        }
    )
    text = render(cfg, listen=f"127.0.0.1:{free_port()}", full=True)
    assert locations(text) == {
        "/api/": "aioworker_api",
        "= /api": "aioworker_api",
        "/api/export/": "aioworker_api_slow",
        "= /api/export": "aioworker_api_slow",
        '"/my dir/"': "aioworker_api_slow",
        '= "/my dir"': "aioworker_api_slow",
        "/": "aioworker_site",
    }
    check_with_nginx(text, True)


def test_static_root(tmp_path: Path) -> None:
    text = render(two_groups(), static_root=str(tmp_path))
    assert f"root {tmp_path};" in text
    assert "try_files $uri @aioworker_web;" in text
    assert "location @aioworker_web {\n        proxy_pass http://aioworker_web;" in text
    check_with_nginx(text, False)


@pytest.mark.parametrize(
    ("cfg", "kwargs", "message"),
    [
        pytest.param(
            lambda: config(
                {
                    "web": {"listen": "http://127.0.0.1:8000"},
                    "a": {"listen": "http://127.0.0.1:8001", "routes": ["/task"]},
                    "b": {"listen": "http://127.0.0.1:8002", "routes": ["/task/"]},
                }
            ),
            {},
            r"groups\.b\.routes: '/task/' is also routed to groups\.a",
            id="route-in-two-groups",
        ),
        pytest.param(
            lambda: config(
                {
                    "web": {"listen": "http://127.0.0.1:8000", "routes": ["/"]},
                    "other": {"listen": "http://127.0.0.1:8001", "routes": ["/", "/x"]},
                }
            ),
            {},
            r"groups\.other\.routes: '/' is also routed to groups\.web",
            id="slash-in-two-groups",
        ),
        pytest.param(
            lambda: two_groups(hosts=["a.internal:8001", "b;} server {listen 1:8001"]),
            {},
            r"groups\.task\.hosts: 'b;} server {listen 1:8001' is not HOST:PORT",
            id="host-with-a-directive",
        ),
        pytest.param(
            lambda: two_groups(task_port=0),
            {},
            r"<config>: groups\.task\.listen: http://127\.0\.0\.1:0 has port 0",
            id="port-zero",
        ),
        pytest.param(
            lambda: config(
                {
                    "web": {"listen": "http://127.0.0.1:8000"},
                    "a": {"listen": "http://127.0.0.1:8001", "routes": ["/x\n}"]},
                }
            ),
            {},
            r"groups\.a\.routes: '/x\\n}' has a control character",
            id="control-character-in-route",
        ),
        pytest.param(
            two_groups,
            {"listen": "80; evil"},
            r"--listen: '80; evil' is empty or holds",
            id="bad-listen",
        ),
        pytest.param(
            two_groups, {"server_name": ""}, r"--server-name: '' is empty", id="empty-name"
        ),
        pytest.param(
            lambda: config({"worker": {"main": "examples.app:app"}}),
            {},
            r"no group has listen",
            id="no-http-group",
        ),
    ],
)
def test_errors(cfg: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        render(cfg(), **kwargs)


def test_group_without_routes_beside_the_default_is_named() -> None:
    """No routes makes a group a default candidate; beside the real one it gets no location."""
    text = render(
        config(
            {
                "web": {"listen": "http://127.0.0.1:8000", "routes": ["/"]},
                "admin": {"listen": "http://127.0.0.1:8002"},
            }
        )
    )
    assert locations(text) == {"/": "aioworker_web"}
    assert "# group admin has no routes and web takes every other path: nginx sends it" in text


def test_port_zero_with_hosts_is_fine() -> None:
    text = render(two_groups(task_port=0, hosts=["127.0.0.1:9001"]))
    assert "upstream aioworker_task {\n    server 127.0.0.1:9001;" in text


# ----------------------------------------------------------------------------- real nginx


# (peer port, time.monotonic()) of each connection to a stand-in group that its peer closed.
CLOSED: queue.Queue[tuple[int, float]] = queue.Queue()


class Upstream(BaseHTTPRequestHandler):
    """Answers with what it received: its own name, the request target, headers, body size.

    It never closes an idle keep-alive connection itself, and records when nginx does.
    """

    protocol_version = "HTTP/1.1"
    server: Any

    def handle(self) -> None:
        super().handle()
        CLOSED.put((self.client_address[1], time.monotonic()))

    def handle_one(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        data = {
            "name": self.server.name,
            "target": self.path,
            "version": self.request_version,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": len(body),
            "peer": self.client_address[1],
        }
        out = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = handle_one

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def front() -> Iterator[str]:
    """nginx on a free port in front of two stand-in groups, web and task."""
    servers = []
    for name in ("web", "task"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        server.daemon_threads = True
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    port = free_port()
    # The task group's keepalive_timeout of 1 s gives nginx an idle timeout of 500 ms.
    cfg = two_groups(
        servers[0].server_address[1], servers[1].server_address[1], keepalive_timeout=1
    )
    try:
        with nginx_prefix() as prefix:
            static = prefix / "static"
            (static / "css").mkdir(parents=True)
            (static / "css" / "site.css").write_text("body {}\n")
            static.chmod(0o755)
            (static / "css").chmod(0o755)
            text = render(cfg, listen=f"127.0.0.1:{port}", full=True, static_root=str(static))
            with running_nginx(text, prefix, port):
                yield f"http://127.0.0.1:{port}"
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    ("path", "group"),
    [
        pytest.param("/task", "task", id="bare"),
        pytest.param("/task/", "task", id="slash"),
        pytest.param("/task/sleep?seconds=1", "task", id="below"),
        pytest.param("/taskforce", "web", id="taskforce-not-task"),
        pytest.param("/tas", "web", id="shorter"),
        pytest.param("/", "web", id="root"),
        pytest.param("/info", "web", id="other"),
        pytest.param("/tas%6b/x", "task", id="encoded-letter-passed-as-sent"),
        pytest.param("/.well-known/x", "web", id="dot-name-is-fine"),
        pytest.param("/a..b/c", "web", id="dots-inside-a-name"),
        pytest.param("/info?next=/../task", "web", id="dots-in-query"),
    ],
)
def test_routing_through_nginx(front: str, path: str, group: str) -> None:
    response = get_raw(front, path)
    assert response.status_code == 200
    data = response.json()
    assert data["name"] == group
    assert data["target"] == path  # passed through as sent


def test_merged_slashes_are_passed_normalized(front: str) -> None:
    data = get_raw(front, "//task/x").json()
    assert (data["name"], data["target"]) == ("task", "/task/x")


def get_raw(front: str, target: str) -> httpx.Response:
    """GET a request target byte for byte (httpx would resolve dot segments itself)."""
    host, port = front.removeprefix("http://").rsplit(":", 1)
    raw = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    response = request((host, int(port)), raw, timeout=10)
    return httpx.Response(response.status, content=response.body)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/task/sleep/../../info", id="dotdot-out-of-task"),
        pytest.param("/info/../task/x", id="dotdot-into-task"),
        pytest.param("/task/./x", id="dot"),
        pytest.param("/task/%2e%2E/info", id="encoded-dotdot"),
        pytest.param("/task/..%2finfo", id="encoded-slash"),
        pytest.param("/task/..", id="trailing-dotdot"),
        pytest.param("/task/..?x=1", id="dotdot-before-query"),
    ],
)
def test_dot_segments_refused(front: str, path: str) -> None:
    assert get_raw(front, path).status_code == 400


def test_headers_reaching_the_group(front: str) -> None:
    port = front.rsplit(":", 1)[1]
    response = httpx.get(
        front + "/info",
        headers={
            "X-Forwarded-For": "198.51.100.1",
            "X-Real-IP": "198.51.100.2",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=198.51.100.3",
            "Connection": "close",
        },
    )
    data = response.json()
    headers = data["headers"]
    assert data["version"] == "HTTP/1.1"
    # The client's own entry stays on the left; nginx appends the address it saw.
    assert headers["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "forwarded" not in headers
    assert "connection" not in headers  # keep-alive upstream even if the client closes
    assert headers["host"] == f"127.0.0.1:{port}"


def test_http10_client_without_host(front: str) -> None:
    port = int(front.rsplit(":", 1)[1])
    response = request(("127.0.0.1", port), b"GET /info HTTP/1.0\r\n\r\n")
    assert (response.version, response.status) == ("1.1", 200)
    assert json.loads(response.body)["headers"]["host"] == "_"  # $host falls back to server_name


def test_large_body_accepted(front: str) -> None:
    # nginx's own default limit is 1 MB; the group's (64 MiB) applies.
    body = b"x" * (3 * 1024 * 1024)
    response = httpx.post(front + "/task/upload", content=body, timeout=30)
    assert response.status_code == 200
    assert response.json() == {**response.json(), "name": "task", "body": len(body)}


def test_full_config_runs_unprivileged() -> None:
    """`--full` keeps every file under the prefix: an unprivileged user can test and run it."""
    text = render(load(ROOT / "config.toml"), listen=f"127.0.0.1:{free_port()}", full=True)
    with nginx_prefix() as prefix:
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        command = [NGINX, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-t"]
        if os.geteuid() == 0:  # as root, drop to nobody to prove no root-owned path is needed
            shutil.chown(prefix, "nobody")
            command = ["runuser", "-u", "nobody", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr
    assert "[alert]" not in result.stderr


def test_nginx_closes_idle_upstream_connections_first(front: str) -> None:
    """nginx drops an idle connection to a group before the group's keepalive_timeout (1 s).

    Were it the other way round, nginx could send a request on a connection the server is
    closing at that very moment, and answer 502.
    """
    response = httpx.get(front + "/task/idle")
    answered = time.monotonic()
    peer = response.json()["peer"]
    deadline = answered + 5
    while True:
        port, closed = CLOSED.get(timeout=max(0.0, deadline - time.monotonic()))
        if port == peer:
            break
    idle = closed - answered
    assert 0.3 < idle < 0.9, idle  # nginx's 500 ms, well before the group's 1 s


def test_static_files_served_by_nginx(front: str) -> None:
    response = httpx.get(front + "/css/site.css")
    assert response.status_code == 200
    assert response.text == "body {}\n"
    assert response.headers["content-type"] == "text/css"
    # A directory, or a file that does not exist, goes to the default group.
    for path in ("/css", "/css/", "/css/other.css"):
        assert httpx.get(front + path).json()["name"] == "web"


def test_large_body_to_the_default_group_with_a_static_root(front: str) -> None:
    # The body limit applies in `location /` (try_files) before the named location.
    body = b"x" * (2 * 1024 * 1024)
    response = httpx.post(front + "/upload", content=body, timeout=30)
    assert response.status_code == 200
    assert response.json()["body"] == len(body)
