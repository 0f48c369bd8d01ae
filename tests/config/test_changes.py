"""restart_needed(): the keys whose change a reload cannot apply, from the settings' metadata."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aioworker.config import (
    Config,
    GroupSettings,
    HttpSettings,
    MetricsSettings,
    restart_needed,
)

WEB = GroupSettings(name="web", app="app:app", listen="http://127.0.0.1:8000")
TASK = GroupSettings(name="task", app="app:app", listen="http://127.0.0.1:8001", routes=("/task",))
OLD = Config(groups=(WEB, TASK))


def server(**changes: Any) -> Config:
    return dataclasses.replace(OLD, server=dataclasses.replace(OLD.server, **changes))


def web(base: GroupSettings = WEB, **changes: Any) -> Config:
    return dataclasses.replace(OLD, groups=(dataclasses.replace(base, **changes), TASK))


@pytest.mark.parametrize(
    ("new", "keys"),
    [
        pytest.param(OLD, [], id="same"),
        pytest.param(server(user="www"), ["server.user"], id="server-user"),
        pytest.param(server(pid_file="other.pid"), ["server.pid_file"], id="pid-file"),
        pytest.param(server(watch=("src",)), [], id="watch-reloads"),
        pytest.param(server(log_level="debug"), [], id="log-level-reloads"),
        pytest.param(server(http=HttpSettings(max_headers=10)), [], id="server-limits-reload"),
        pytest.param(web(listen="http://127.0.0.1:9000"), ["groups.web.listen"], id="listen"),
        pytest.param(web(reuse_port=True), ["groups.web.reuse_port"], id="reuse-port"),
        pytest.param(web(preload=True), ["groups.web.preload"], id="preload"),
        pytest.param(web(count=8, timeout=5.0, env=(("A", "1"),)), [], id="worker-settings"),
        pytest.param(web(http=HttpSettings(max_body_bytes=1)), [], id="group-limits"),
        pytest.param(web(app="other:app", factory=True), [], id="app-without-preload"),
        pytest.param(dataclasses.replace(OLD, groups=(WEB,)), ["groups.task"], id="group-removed"),
        pytest.param(
            dataclasses.replace(OLD, groups=(WEB, TASK, dataclasses.replace(TASK, name="more"))),
            ["groups.more"],
            id="group-added",
        ),
        pytest.param(
            dataclasses.replace(OLD, metrics=MetricsSettings(listen="http://127.0.0.1:9100")),
            [],
            id="metrics-listen-reloads",
        ),
        pytest.param(
            dataclasses.replace(
                server(group="www", log_file="x.log", pid_file="x.pid"),
                groups=(dataclasses.replace(WEB, user="nobody", listen="unix:/tmp/s"), TASK),
            ),
            ["server.pid_file", "server.group", "groups.web.listen", "groups.web.user"],
            id="several-in-file-order",
        ),
    ],
)
def test_restart_needed_names_the_keys_a_reload_cannot_apply(new: Config, keys: list[str]) -> None:
    assert restart_needed(OLD, new) == keys


def test_app_and_factory_need_a_restart_while_the_running_group_preloads() -> None:
    preloading = dataclasses.replace(WEB, preload=True)
    old = web(preloading)
    new = web(preloading, app="other:app", factory=True, main="")
    assert restart_needed(old, new) == ["groups.web.app", "groups.web.factory"]
    # Turning preload off is itself the restart: the running master imported the app.
    assert restart_needed(old, web(app="other:app")) == ["groups.web.app", "groups.web.preload"]
