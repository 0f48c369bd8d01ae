"""Secrets for the workers: `env_file` read as root before the privilege drop, its mode
checked; a warning when config.toml holds env values every user can read."""

from __future__ import annotations

import json

import pytest

from tests.helpers.daemon import cli
from tests.helpers.faults import unix_user
from tests.helpers.master import config_text, get, group_table, make_dir, running_master


def test_env_file_reaches_workers_that_cannot_read_it() -> None:
    directory = make_dir(world_readable=True)
    for name, text in (
        ("server.env", "GREETING=server\n"),
        (
            "web.env",
            '# the database\nexport DATABASE_URL="postgres://u:pw@db/app"\nGREETING=file\n',
        ),
    ):
        (directory / name).write_text(text)
        (directory / name).chmod(0o600)
    with unix_user() as user:
        keys = {"user": f'"{user.pw_name}"'}
        tables = (
            group_table("web", 1, **keys, env_file='"web.env"')
            + group_table("task", 1, **keys, env_file='"web.env"', env='{ GREETING = "table" }')
            + group_table("spare", 1, **keys)
        )
        config = config_text(tables, server='env_file = "server.env"\n')
        with running_master(config, directory) as master:
            seen = {g: json.loads(get(master.url(g), "/info")[1]) for g in ("web", "task", "spare")}
        assert {info["uid"] for info in seen.values()} == {user.pw_uid}
        # [server] env_file, then the group's, then env: each later one wins.
        assert {g: info["env"] for g, info in seen.items()} == {
            "web": "file",
            "task": "table",
            "spare": "server",
        }


@pytest.mark.parametrize(
    ("mode", "text", "problem"),
    [
        pytest.param(0o644, "A=1\n", "is open to other users (mode 644): chmod 600 it", id="0644"),
        pytest.param(0o604, "A=1\n", "is open to other users (mode 604)", id="0604"),
        pytest.param(0o620, "A=1\n", "can be changed by another user (mode 620", id="0620"),
        pytest.param(0o600, "A=1\nnot a line\n", "web.env:2: expected KEY=VALUE", id="bad-line"),
        pytest.param(None, "", "cannot read", id="missing"),
    ],
)
def test_start_refuses_an_env_file(mode: int | None, text: str, problem: str) -> None:
    directory = make_dir()
    if mode is not None:
        (directory / "web.env").write_text(text)
        (directory / "web.env").chmod(mode)
    config = config_text(group_table("web", 1, env_file='"web.env"'))
    (directory / "config.toml").write_text(config)
    result = cli("start", "-d", cwd=directory)
    if result.returncode == 0:
        cli("stop", "--fast", cwd=directory)
    assert result.returncode == 2
    assert f"{directory / 'config.toml'}: groups.web.env_file: " in result.stderr
    assert problem in result.stderr


def test_start_names_a_bad_server_env_file_once() -> None:
    directory = make_dir()
    (directory / "all.env").write_text("A=1\n")
    (directory / "all.env").chmod(0o644)
    config = config_text(
        group_table("web", 1) + group_table("task", 1), server='env_file = "all.env"\n'
    )
    (directory / "config.toml").write_text(config)
    result = cli("start", "-d", cwd=directory)
    if result.returncode == 0:
        cli("stop", "--fast", cwd=directory)
    assert result.returncode == 2
    assert result.stderr.count("server.env_file: ") == 1
    assert "is open to other users (mode 644)" in result.stderr


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, False)])
def test_warns_when_env_values_are_readable_by_everyone(mode: int, warned: bool) -> None:
    directory = make_dir()
    config = directory / "config.toml"
    config.write_text(config_text(group_table("web", 1, env='{ DATABASE_URL = "secret" }')))
    config.chmod(mode)
    with running_master(config.read_text(), directory) as master:
        pass
    found = master.all_matches(r"WARNING .* holds env values \(groups web\) and every user can")
    assert bool(found) == warned
