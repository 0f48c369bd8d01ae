"""`reload`, `start -g` and `stop -g` wait for the outcome and exit 1 with the reason when a
group could not do what was asked; `--no-wait` only asks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import ONE
from tests.helpers.daemon import cli as aioworker
from tests.helpers.master import config_text, get, make_dir, running_master

TWO = ONE.replace("count = 1", "count = 2") + ONE.replace("groups.web", "groups.task")


def _status(directory: Path) -> dict[str, Any]:
    result = aioworker("status", "--json", cwd=directory)
    assert result.returncode == 0, result.stderr
    return {g["name"]: g for g in json.loads(result.stdout)["groups"]}


@pytest.mark.parametrize("argv", [[], ["-g", "web"]], ids=["every-group", "one-group"])
def test_reload_returns_once_the_new_workers_serve(argv: list[str]) -> None:
    directory = make_dir()
    with running_master(config_text(TWO), directory):
        result = aioworker("reload", *argv, cwd=directory)
        assert result.returncode == 0, result.stderr
        assert "reloaded web" in result.stdout
        web = _status(directory)["web"]
        # Done when the command returned, not some time later.
        assert web["state"] == "running", web
        assert [w["generation"] for w in web["workers"] if w["state"] != "draining"] == [1, 1]


@pytest.mark.parametrize("argv", [[], ["-g", "web"]], ids=["every-group", "one-group"])
def test_reload_that_cannot_start_the_new_code_exits_1_with_the_reason(argv: list[str]) -> None:
    directory = make_dir()
    with running_master(config_text(TWO), directory) as master:
        (directory / "FAIL_IMPORT").write_text("")
        result = aioworker("reload", *argv, cwd=directory)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert (
            "aioworker reload: group web could not be reloaded: "
            "RuntimeError: import failed on purpose"
        ) in result.stderr
        assert "the old workers keep serving" in result.stderr
        assert get(master.url("web"))[0] == 200


def test_reload_no_wait_only_asks() -> None:
    directory = make_dir()
    with running_master(config_text(TWO), directory) as master:
        (directory / "FAIL_IMPORT").write_text("")
        since = master.mark()
        result = aioworker("reload", "--no-wait", cwd=directory)
        assert result.returncode == 0, result.stderr
        assert "reloading every reloadable group" in result.stdout
        master.wait_for(r"reload failed group=web", since)


def test_stop_and_start_one_group_wait_for_the_outcome() -> None:
    directory = make_dir()
    with running_master(config_text(TWO), directory):
        stopped = aioworker("stop", "-g", "task", cwd=directory)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped task" in stopped.stdout
        assert _status(directory)["task"]["workers"] == []  # gone when the command returned

        started = aioworker("start", "-g", "task", cwd=directory)
        assert started.returncode == 0, started.stderr
        assert "started task" in started.stdout
        assert _status(directory)["task"]["ready"] == 1

        aioworker("stop", "-g", "task", cwd=directory)
        (directory / "FAIL_IMPORT").write_text("")
        failed = aioworker("start", "-g", "task", cwd=directory)
        assert failed.returncode == 1, (failed.stdout, failed.stderr)
        assert "aioworker start: group task could not be started: " in failed.stderr
        assert "RuntimeError: import failed on purpose" in failed.stderr


def test_reload_without_a_control_socket_sends_hup_and_says_it_cannot_wait() -> None:
    directory = make_dir()
    with running_master(config_text(ONE, server='control_socket = ""\n'), directory) as master:
        since = master.mark()
        result = aioworker("reload", cwd=directory)
        assert result.returncode == 0, result.stderr
        assert "no control socket to wait on" in result.stdout
        master.wait_for(r"reloading group=web generation=1", since)


def test_reload_with_no_reloadable_group_says_so() -> None:
    directory = make_dir()
    with running_master(config_text(ONE + "reloadable = false\n"), directory):
        result = aioworker("reload", cwd=directory)
        assert result.returncode == 0, result.stderr
        assert "nothing to reload" in result.stdout
