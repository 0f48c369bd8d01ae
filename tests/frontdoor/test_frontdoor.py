"""End to end: a real nginx, configured by `aioworker nginx --full`, in front of a real master.

The master runs the web group (2 workers) and the task group (1 worker, strict routes) on free
loopback ports, the task group on a unix socket in the second variant; nginx listens on another
port. The test client connects from 127.0.0.2, so the address the app reports can only have come
through nginx's X-Forwarded-For and the trusted-proxy logic (nginx reaches the groups from
127.0.0.1, the default forwarded_allow_ips, or over the unix socket, a trusted local peer).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.nginx import free_port, nginx_prefix, running_nginx

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ADDRESS = "127.0.0.2"  # anywhere in 127/8 is loopback on Linux
BLOCK_SECONDS = 4.0

CONFIG = """\
[server]
pid_file = "aioworker.pid"
control_socket = "aioworker.sock"
graceful_timeout = 2.0
keepalive_timeout = 2.0
request_timeout = 10.0

[groups.web]
app = "tests.apps.frontdoor:app"
listen = "http://127.0.0.1:{web}"
count = 2
routes = ["/"]

[groups.task]
app = "tests.apps.frontdoor:app"
listen = "{task}"
count = 1
routes = ["/task"]
strict_routes = true
request_timeout = 20.0
"""


@dataclass
class FrontDoor:
    url: str  # nginx
    web: str  # the web group directly
    task: httpx.Client  # the task group directly (TCP or its unix socket)
    client: httpx.Client  # connects from CLIENT_ADDRESS


def env() -> dict[str, str]:
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


@pytest.fixture(scope="module", params=["tcp", "unix"])
def front(request: pytest.FixtureRequest) -> Iterator[FrontDoor]:
    web, port = free_port(), free_port()
    # nginx's workers run as nobody when the test runs as root: the socket must be in a
    # directory they may enter, as the nginx prefix is.
    with nginx_prefix() as prefix:
        if request.param == "unix":
            task = f"unix:{prefix / 'task.sock'}"
            direct = httpx.HTTPTransport(uds=str(prefix / "task.sock"))
            task_base = "http://localhost"
        else:
            task_port = free_port()
            task = task_base = f"http://127.0.0.1:{task_port}"
            direct = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
        config = prefix / "config.toml"
        config.write_text(CONFIG.format(web=web, task=task))
        listen = f"--listen=127.0.0.1:{port}"
        nginx_conf = subprocess.run(
            [sys.executable, "-m", "aioworker", "nginx", "-c", str(config), "--full", listen],
            capture_output=True,
            text=True,
            env=env(),
            cwd=ROOT,
            timeout=30,
            check=True,
        ).stdout
        assert (f"server {task.removeprefix('http://')};") in nginx_conf
        with (
            running_master(config),
            running_nginx(nginx_conf, prefix, port),
            client() as http,
            httpx.Client(transport=direct, base_url=task_base, timeout=30) as task_client,
        ):
            yield FrontDoor(
                f"http://127.0.0.1:{port}", f"http://127.0.0.1:{web}", task_client, http
            )


def client() -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    return httpx.Client(transport=transport, timeout=30)


class running_master:
    """`python -m aioworker start` in the foreground; ready when it logs `started`."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []

    def __enter__(self) -> subprocess.Popen[str]:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aioworker", "start", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=ROOT,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._stop()
                raise TimeoutError("master not started:\n" + "".join(self.log)) from None
            if " started pid=" in line:
                return self.process
            if line == "":  # stderr closed: the master exited
                self._stop()
                raise RuntimeError("master exited:\n" + "".join(self.log))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put("")

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # fast stop: the test is over
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)  # stderr reaches EOF once every worker has exited too
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __exit__(self, *exc: object) -> None:
        self._stop()


@pytest.mark.parametrize(
    ("path", "group", "status"),
    [
        pytest.param("/task/sleep?seconds=0", "task", 200, id="task-route"),
        pytest.param("/task/cpu?n=10", "task", 200, id="task-cpu"),
        pytest.param("/task", "task", 404, id="bare-task-prefix"),
        pytest.param("/taskforce", "web", 404, id="taskforce-is-web"),
        pytest.param("/info", "web", 200, id="info"),
        pytest.param("/", "web", 200, id="root"),
    ],
)
def test_paths_reach_their_group(front: FrontDoor, path: str, group: str, status: int) -> None:
    response = front.client.get(front.url + path)
    assert response.status_code == status
    assert response.headers["x-aioworker-group"] == group
    assert response.headers["x-aioworker-client"] == f"{CLIENT_ADDRESS} 0"


def test_info_reports_the_web_group(front: FrontDoor) -> None:
    info = front.client.get(front.url + "/info").json()
    assert info["group"] == "web"
    assert info["scheme"] == "http"


def test_app_sees_the_client_address(front: FrontDoor) -> None:
    info = front.client.get(front.url + "/info").json()
    assert info["client"] == [CLIENT_ADDRESS, 0]
    # A client's own X-Forwarded-For entry is left of the address nginx saw: not believed.
    spoofed = front.client.get(
        front.url + "/info",
        headers={"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "198.51.100.1"},
    ).json()
    assert spoofed["client"] == [CLIENT_ADDRESS, 0]


def test_direct_client_headers_ignored(front: FrontDoor) -> None:
    """Straight to the group from an untrusted address: proxy headers do nothing."""
    info = front.client.get(
        front.web + "/info",
        headers={"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"},
    ).json()
    assert info["client"][0] == CLIENT_ADDRESS
    assert info["client"][1] != 0  # the real peer port, not a forwarded entry
    assert info["scheme"] == "http"


def test_task_group_refuses_other_paths(front: FrontDoor) -> None:
    response = front.task.get("/info")
    assert response.status_code == 404
    assert "x-aioworker-group" not in response.headers  # strict_routes answered, not the app


def test_dot_segments_refused(front: FrontDoor) -> None:
    # httpx would resolve the dots itself; the raw target must reach nginx as written.
    request = front.client.build_request("GET", front.url + "/")
    request.url = request.url.copy_with(raw_path=b"/task/%2e%2e/task/sleep")
    assert front.client.send(request).status_code == 400


def test_web_answers_while_task_group_is_saturated(front: FrontDoor) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool, client() as other:
        # The task group's only worker blocks its event loop in time.sleep.
        blocker = pool.submit(front.client.get, f"{front.url}/task/sleep?seconds={BLOCK_SECONDS}")
        started = time.monotonic()
        # Saturated once a /task/ request through nginx gets no answer; until the blocker
        # reaches the worker these probes are answered at once.
        while True:
            try:
                other.get(front.url + "/task/sleep?seconds=0", timeout=0.3)
            except httpx.TimeoutException:
                break
            assert not blocker.done(), "the blocking request finished before it was seen"
        assert not blocker.done()

        latencies = []
        for _ in range(20):
            t0 = time.monotonic()
            response = other.get(front.url + "/info", timeout=2)
            latencies.append(time.monotonic() - t0)
            assert response.status_code == 200
            assert response.json()["group"] == "web"
        assert not blocker.done(), "the web requests did not overlap the blocked task group"
        assert max(latencies) < 0.5, latencies

        response = blocker.result(timeout=30)
        assert response.status_code == 200
        assert response.headers["x-aioworker-group"] == "task"
        assert time.monotonic() - started >= BLOCK_SECONDS * 0.9
