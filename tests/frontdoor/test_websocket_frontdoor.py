"""FastAPI and Starlette WebSocket apps, unchanged, under a real master: directly and through
the nginx config `aioworker nginx` generates; strict_routes refuses handshakes outside routes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from aioworker.config import load
from aioworker.frontdoor.nginx import render
from tests.helpers.master import running_master
from tests.helpers.nginx import free_port, nginx_prefix, running_nginx

pytestmark = pytest.mark.slow

CONFIG = """\
[server]
graceful_timeout = 2.0

[groups.web]
app = "tests.apps.ws_frameworks:starlette_app"
listen = "http://127.0.0.1:{web}"
count = 1
routes = ["/"]

[groups.fa]
app = "tests.apps.ws_frameworks:fastapi_app"
listen = "http://127.0.0.1:{fa}"
count = 1
routes = ["/fa"]
strict_routes = true
"""


@dataclass
class Ports:
    nginx: int
    web: int
    fa: int


@pytest.fixture(scope="module")
def ports() -> Iterator[Ports]:
    found = Ports(free_port(), free_port(), free_port())
    with nginx_prefix() as prefix:
        text = CONFIG.format(web=found.web, fa=found.fa)
        (prefix / "config.toml").write_text(text)
        conf = render(load(prefix / "config.toml"), listen=f"127.0.0.1:{found.nginx}", full=True)
        with running_master(text, prefix), running_nginx(conf, prefix, found.nginx):
            yield found


@pytest.mark.parametrize("through", ["nginx", "direct"])
@pytest.mark.parametrize(("path", "framework"), [("/echo", "starlette"), ("/fa/echo", "fastapi")])
def test_framework_echo(ports: Ports, through: str, path: str, framework: str) -> None:
    port = (
        ports.nginx if through == "nginx" else (ports.fa if framework == "fastapi" else ports.web)
    )
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
        for n in range(3):
            ws.send(f"hello {n}")
            assert ws.recv(timeout=10) == f"{framework}: hello {n}"
        if framework == "fastapi":
            big = bytes(range(256)) * 4096  # 1 MiB, through nginx's buffers
            ws.send(big)
            assert ws.recv(timeout=30) == big


def test_strict_routes_refuse_websockets_outside_the_routes(ports: Ports) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(f"ws://127.0.0.1:{ports.fa}/echo", open_timeout=10)
    assert info.value.response.status_code == 403
