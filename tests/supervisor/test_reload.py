"""A reload (HUP) applies every section it can, end to end; the control socket needs no hook."""

from __future__ import annotations

import signal
import socket
import textwrap

import httpx
import pytest

from aioworker.supervisor.control import request
from tests.helpers.master import (
    config_text,
    get,
    group_table,
    make_dir,
    running_master,
    spawn_python,
)
from tests.helpers.nginx import free_port

pytestmark = pytest.mark.slow

WEB = group_table("web", 1)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_reload_moves_the_metrics_endpoint_and_turns_it_off() -> None:
    directory = make_dir()
    first, second = free_port(), free_port()
    metrics = '\n[metrics]\nlisten = "http://127.0.0.1:{}"\n'
    with running_master(config_text(WEB) + metrics.format(first), directory) as master:
        master.wait_for(rf"metrics on http://127.0.0.1:{first} ")
        assert httpx.get(f"http://127.0.0.1:{first}/healthz").status_code == 200
        (directory / "config.toml").write_text(config_text(WEB) + metrics.format(second))
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(rf"metrics on http://127.0.0.1:{second} ", since)
        master.wait_for(r"reloaded group=web generation=1", since)
        assert httpx.get(f"http://127.0.0.1:{second}/healthz").status_code == 200
        assert refused(first)
        # A reload whose new listener cannot be bound keeps the old one serving.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            (directory / "config.toml").write_text(config_text(WEB) + metrics.format(busy))
            since = master.mark()
            master.signal(signal.SIGHUP)
            master.wait_for(rf"reload: metrics.listen: .*{busy}.*still on .*:{second}", since)
        assert httpx.get(f"http://127.0.0.1:{second}/healthz").status_code == 200
        # Back to the address it still serves: nothing to move, nothing to fail.
        (directory / "config.toml").write_text(config_text(WEB) + metrics.format(second))
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reloaded group=web generation=3", since)
        assert not master.all_matches(r"metrics", since)
        (directory / "config.toml").write_text(config_text(WEB))
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"metrics off", since)
        assert refused(second)
        assert get(master.url("web"))[0] == 200


def test_reload_starts_watching_the_new_watch_paths() -> None:
    directory = make_dir()
    (directory / "code").mkdir()
    (directory / "code" / "mod.py").write_text("VALUE = 1\n")
    with running_master(config_text(WEB), directory) as master:
        assert not master.all_matches(r"watching")
        watched = config_text(WEB, server='watch = ["code"]\n')
        (directory / "config.toml").write_text(watched)
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"watching .*code", since)
        master.wait_for(r"reloaded group=web generation=1", since)
        since = master.mark()
        (directory / "code" / "mod.py").write_text("VALUE = 2\n")
        master.wait_for(r"changed: .*mod\.py; reloading", since)
        master.wait_for(r"reloaded group=web generation=2", since)


NO_HOOKS = """
import sys
from aioworker.supervisor.runner import run
sys.exit(run("config.toml"))
"""


def test_control_socket_serves_a_master_without_any_hook() -> None:
    """status, reload -g, stop -g and start -g are the master's own, not a hook's."""
    directory = make_dir()
    two = WEB + group_table("task", 1, routes='["/task"]')
    (directory / "config.toml").write_text(config_text(two))
    (directory / "nohooks.py").write_text(textwrap.dedent(NO_HOOKS))
    master = spawn_python(["nohooks.py"], directory)
    sock = directory / "aioworker.sock"
    try:
        master.wait_for(r"started pid=")
        assert not master.all_matches(r"metrics on|scoreboard")
        status = request(sock, "status")
        assert [g["name"] for g in status["groups"]] == ["web", "task"]
        since = master.mark()
        assert request(sock, "reload", groups=["task"])["groups"] == ["task"]
        master.wait_for(r"reloaded group=task generation=1", since)
        assert request(sock, "stop", groups=["task"])["groups"] == ["task"]
        master.wait_for(r"exited pid=\d+ group=task", since)
        assert request(sock, "start", groups=["task"])["groups"] == ["task"]
        master.wait_for(r"ready group=task slot=0 pid=\d+ generation=1", since)
        assert request(sock, "stop")["stopping"]
        assert master.wait(20) == 0
    finally:
        master.stop()
    assert not sock.exists()
