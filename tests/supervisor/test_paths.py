"""Symlink planting: the master refuses files another user could have created first, and never
follows a link when it creates its pid, temp and log files."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from aioworker.supervisor.runner import write_pid
from tests.helpers.daemon import cli, daemon
from tests.helpers.faults import unix_user
from tests.helpers.master import config_text, group_table, make_dir


def _plant_link(path: Path, target: Path, user: pwd.struct_passwd) -> None:
    path.symlink_to(target)
    os.lchown(path, user.pw_uid, user.pw_gid)


def _plant_file(path: Path, target: Path, user: pwd.struct_passwd) -> None:
    path.write_text("")
    os.chown(path, user.pw_uid, user.pw_gid)


@pytest.mark.parametrize(
    ("mode", "key", "plant", "problem"),
    [
        pytest.param(0o1777, "pid_file", _plant_link, "is a symbolic link", id="pid-link"),
        pytest.param(0o1777, "log_file", _plant_link, "is a symbolic link", id="log-link"),
        pytest.param(0o1777, "control_socket", _plant_link, "is a symbolic link", id="sock-link"),
        pytest.param(0o1777, "pid_file", _plant_file, "belongs to another user", id="pid-theirs"),
        pytest.param(0o777, "log_file", None, "writable by every user", id="not-sticky"),
        pytest.param(0o755, "pid_file", "owner", "belongs to another user", id="their-dir"),
    ],
)
def test_start_refuses_a_file_another_user_could_plant(
    mode: int, key: str, plant: object, problem: str
) -> None:
    directory = make_dir(world_readable=True)
    shared = directory / "shared"
    shared.mkdir()
    shared.chmod(mode)
    secret = directory / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    with unix_user() as user:
        name = shared / {"pid_file": "aw.pid", "log_file": "aw.log"}.get(key, "aw.sock")
        if plant == "owner":
            os.chown(shared, user.pw_uid, user.pw_gid)
        elif callable(plant):
            plant(name, secret, user)
        server = f'{key} = "shared/{name.name}"\n'
        (directory / "config.toml").write_text(config_text(group_table("web", 1), server=server))
        result = cli("start", "-d", cwd=directory)
        if result.returncode == 0:  # must not outlive the test
            cli("stop", "--fast", cwd=directory)
    assert result.returncode == 1
    assert f"{directory / 'config.toml'}: server.{key}: " in result.stderr
    assert problem in result.stderr
    assert secret.read_text() == "root only\n"


def test_start_in_a_sticky_directory_creates_its_own_files() -> None:
    directory = make_dir(world_readable=True)
    shared = directory / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    server = (
        'pid_file = "shared/aw.pid"\nlog_file = "shared/aw.log"\n'
        'control_socket = "shared/aw.sock"\n'
    )
    (directory / "config.toml").write_text(config_text(group_table("web", 1), server=server))
    with daemon(directory, "shared/aw.sock") as d:
        assert (shared / "aw.pid").read_text() == f"{d.pid}\n"
        assert d.command("status")["pid"] == d.pid
        for name in ("aw.pid", "aw.log", "aw.sock"):
            assert (shared / name).lstat().st_uid == os.geteuid()
        assert sorted(p.name for p in shared.iterdir()) == ["aw.log", "aw.pid", "aw.sock"]


def test_pid_and_log_files_are_never_written_through_a_link() -> None:
    directory = make_dir()
    secret = directory / "secret"
    secret.write_text("root only\n")
    pid_file = directory / "aw.pid"
    pid_file.symlink_to(secret)
    write_pid(pid_file, 12345)
    assert not pid_file.is_symlink()
    assert pid_file.read_text() == "12345\n"
    assert secret.read_text() == "root only\n"
    (directory / "aw.log").symlink_to(secret)
    server = 'log_file = "aw.log"\n'
    (directory / "config.toml").write_text(config_text(group_table("web", 1), server=server))
    result = cli("start", "-d", cwd=directory)
    if result.returncode == 0:
        cli("stop", "--fast", cwd=directory)
    assert result.returncode == 1
    assert "server.log_file: cannot open" in result.stderr
    assert secret.read_text() == "root only\n"
