"""The command line: real `python -m aioworker` processes, their messages and exit codes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from aioworker.cli import commands as cli
from tests.helpers.daemon import cli as aioworker
from tests.helpers.master import (
    APPS,
    PYTHON,
    ROOT,
    config_text,
    get,
    make_dir,
    running_master,
    spawn,
    spawn_python,
)
from tests.helpers.ports import other_listener

ONE = """
[groups.web]
app = "tests.apps.testapp:app"
listen = "http://127.0.0.1:0"
count = 1
"""


def test_help_lists_every_command_and_serve_lists_every_engine_limit() -> None:
    top = aioworker("--help", cwd=ROOT)
    assert top.returncode == 0
    for command in ("start", "stop", "reload", "restart", "status", "check", "nginx", "serve"):
        assert command in top.stdout
    serve = aioworker("serve", "--help", cwd=ROOT)
    for flag in (
        "--listen",
        "--count",
        "--factory",
        "--max-body-bytes",
        "--keepalive-timeout",
        "--forwarded-allow-ips",
        "--access-log",
    ):
        assert flag in serve.stdout


@pytest.mark.parametrize(
    ("argv", "printed"),
    [
        pytest.param(
            ["check"],
            [
                "web    http://127.0.0.1:8000  2        examples.app:app  /",
                "task   http://127.0.0.1:8001  2        examples.app:app  /task",
            ],
            id="check-summarises-the-shipped-config",
        ),
        pytest.param(
            ["nginx", "--listen", "8080", "--server-name", "example.test"],
            ["upstream", "example.test"],
            id="nginx-front-proxy-config",
        ),
    ],
)
def test_command_prints(argv: list[str], printed: list[str]) -> None:
    result = aioworker(*argv, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for text in printed:
        assert text in result.stdout


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        pytest.param(
            ONE + "cout = 1\n",
            "groups.web.cout: unknown key; did you mean count?",
            id="unknown-key",
        ),
        pytest.param(
            ONE.replace("tests.apps.testapp:app", "missing_module:app"),
            "groups.web.app: cannot import missing_module:app: could not import "
            "module 'missing_module'",
            id="missing-module",
        ),
        pytest.param(
            ONE.replace("tests.apps.testapp:app", "tests.apps.testapp:nope"),
            "groups.web.app: cannot import tests.apps.testapp:nope: "
            "module 'tests.apps.testapp' has no attribute 'nope'",
            id="missing-attribute",
        ),
        pytest.param(
            ONE + 'user = "no-such-user-here"\n',
            "groups.web.user: no such user 'no-such-user-here'",
            id="unknown-user",
        ),
    ],
)
@pytest.mark.parametrize("command", ["check", "start"])
def test_bad_config_exits_2_naming_file_table_and_key(
    groups: str, message: str, command: str
) -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(config_text(groups))
    result = aioworker(command, "-c", "config.toml", cwd=directory)
    assert result.returncode == 2
    assert f"{directory / 'config.toml'}: {message}" in result.stderr
    assert not (directory / "aioworker.pid").exists()  # nothing was started


def test_commands_without_a_master_exit_3() -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(config_text(ONE))
    for command in ("stop", "reload", "status"):
        result = aioworker(command, cwd=directory)
        assert result.returncode == 3
        assert f"no master running (no pid file at {directory / 'aioworker.pid'})" in result.stderr
    dead = subprocess.Popen(["true"])
    dead.wait()
    (directory / "aioworker.pid").write_text(f"{dead.pid}\n")
    result = aioworker("stop", cwd=directory)
    assert result.returncode == 3
    assert f"stale pid file {directory / 'aioworker.pid'}: pid {dead.pid} is not running" in (
        result.stderr
    )
    # A reused pid: alive, but not an aioworker process; never signalled.
    with subprocess.Popen(["sleep", "60"]) as foreign:
        (directory / "aioworker.pid").write_text(f"{foreign.pid}\n")
        result = aioworker("stop", cwd=directory)
        assert result.returncode == 3
        assert f"pid {foreign.pid} is another program" in result.stderr
        assert foreign.poll() is None
        foreign.kill()


@pytest.mark.parametrize("daemon", [[], ["-d"]], ids=["foreground", "daemon"])
def test_start_refuses_a_port_another_process_holds(daemon: list[str]) -> None:
    with other_listener() as holder:
        port = holder.getsockname()[1]
        directory = make_dir()
        (directory / "config.toml").write_text(config_text(ONE.replace(":0", f":{port}")))
        # In the background, the foreground process reports the daemon's reason.
        result = aioworker("start", *daemon, cwd=directory)
        assert result.returncode == 1
        assert (
            f"{directory / 'config.toml'}: groups.web.listen: "
            f"http://127.0.0.1:{port}: address already in use by another process"
        ) in (result.stderr)
        assert not (directory / "aioworker.pid").exists()


@pytest.mark.parametrize("holder", ["dead", "foreign"])
def test_start_replaces_a_stale_pid_file(holder: str) -> None:
    directory = make_dir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        if holder == "dead":
            other.kill()
            other.wait()
        # A dead pid, or a live one reused by another program: neither is a master.
        (directory / "aioworker.pid").write_text(f"{other.pid}\n")
        with running_master(config_text(ONE), directory) as master:
            master.wait_for(
                rf"removing stale pid file .*aioworker.pid \(pid {other.pid} is not an aioworker"
            )
            assert int((directory / "aioworker.pid").read_text()) == master.proc.pid
            assert get(master.url("web"))[0] == 200
        assert other.poll() is None or holder == "dead"  # never signalled
    finally:
        other.kill()
        other.wait()


def test_second_start_is_refused_while_a_master_runs() -> None:
    with running_master(config_text(ONE)) as master:
        result = aioworker("start", cwd=master.directory)
        assert result.returncode == 1
        assert f"a master is already running (pid {master.proc.pid}" in result.stderr
        assert get(master.url("web"))[0] == 200


@pytest.mark.slow
def test_daemon_status_reload_reopen_logs_restart_and_stop() -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(config_text(ONE, server='log_file = "server.log"\n'))
    started = aioworker("start", "-d", cwd=directory)
    assert started.returncode == 0, started.stderr
    pid = int((directory / "aioworker.pid").read_text())
    try:  # (every check inside: a failing one must not leave a daemon behind)
        assert f"started in the background (pid {pid}); logging to {directory / 'server.log'}" in (
            started.stdout
        )
        log = (directory / "server.log").read_text()
        port = int(log.split("listening group=web url=http://127.0.0.1:")[1].split()[0])
        assert get(("127.0.0.1", port))[0] == 200

        status = aioworker("status", "--json", cwd=directory)
        assert status.returncode == 0
        assert json.loads(status.stdout)["pid"] == pid
        assert aioworker("reload", cwd=directory).returncode == 0

        (directory / "server.log").rename(directory / "server.log.1")
        os.kill(pid, signal.SIGUSR1)
        restarted = aioworker("restart", "-d", cwd=directory)
        assert restarted.returncode == 0, restarted.stderr
        new_pid = int((directory / "aioworker.pid").read_text())
        assert new_pid != pid
        # The rotated file was reopened by the old master before it stopped.
        new_log = (directory / "server.log").read_text()
        assert "log file reopened" in new_log
        # The old workers reopened it too: their drain lines are in the new file.
        assert re.search(r"\[\d+\] INFO aioworker.worker: draining group=web", new_log)
        assert "reloading group=web" in (directory / "server.log.1").read_text()
    finally:
        stopped = aioworker("stop", cwd=directory)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped (pid" in stopped.stdout
    assert not (directory / "aioworker.pid").exists()


@pytest.mark.parametrize(
    ("server", "key", "problem"),
    [
        pytest.param('log_file = "afile/x.log"', "log_file", "cannot open", id="log-file"),
        pytest.param('pid_file = "afile/x.pid"', "pid_file", "cannot write", id="pid-file"),
        pytest.param('pid_file = "adir"', "pid_file", "cannot read", id="pid-file-is-a-dir"),
    ],
)
def test_daemon_reports_files_it_cannot_write(server: str, key: str, problem: str) -> None:
    # What the background master could not do is told by the foreground process.
    directory = make_dir()
    (directory / "afile").write_text("")  # a file where a directory is needed
    (directory / "adir").mkdir()
    (directory / "config.toml").write_text(config_text(ONE, server=server + "\n"))
    result = aioworker("start", "-d", cwd=directory)
    if result.returncode == 0:  # a daemon that should not have started must not outlive us
        aioworker("stop", "--fast", cwd=directory)
    assert result.returncode == 1
    assert f"{directory / 'config.toml'}: server.{key}: {problem} " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        pytest.param("", "permission denied on control socket", id="control-socket"),
        pytest.param('control_socket = ""', "permission denied to signal the master", id="signal"),
    ],
)
def test_stop_without_permission_exits_4(server: str, expected: str) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CI runs as root)")
    directory = make_dir(world_readable=True)
    with running_master(config_text(ONE, server=server), directory) as master:
        (directory / "aioworker.pid").chmod(0o644)
        read_fd, write_fd = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            os.close(read_fd)
            sys.stderr = os.fdopen(write_fd, "w")
            os.setgid(65534)
            os.setuid(65534)
            code = cli.main(["stop", "-c", str(directory / "config.toml")])
            sys.stderr.flush()
            os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd) as stream:
            message = stream.read()
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 4
        # The control socket (0600) refuses the user first; without one, the signal does.
        assert expected in message
        assert master.proc.poll() is None


@pytest.mark.parametrize(
    ("server", "extra"),
    [
        pytest.param("", ["--watch"], id="start--watch"),
        pytest.param('watch = ["."]\n', [], id="server-watch-key"),
    ],
)
def test_watch_reloads_new_code_when_a_python_file_changes(server: str, extra: list[str]) -> None:
    # A copy of the app in the watched directory: the test edits it.
    directory = make_dir()
    app = directory / "watched.py"
    shutil.copyfile(APPS / "testapp.py", app)
    config = config_text(ONE.replace("tests.apps.testapp:", "watched:"), server=server)
    with running_master(config, directory, extra=extra) as master:
        assert json.loads(get(master.url("web"), "/info")[1])["env"] is None
        since = master.mark()
        app.write_text(app.read_text().replace('os.environ.get("GREETING")', '"new code"'))
        os.utime(app, ns=(0, os.stat(app).st_mtime_ns + 10**9))
        master.wait_for(r"changed: .*watched\.py; reloading", since)
        master.wait_for(r"reloaded group=web generation=1", since)
        # The new worker imported the app afresh: the master never imported it.
        assert json.loads(get(master.url("web"), "/info")[1])["env"] == "new code"


def test_serve_runs_one_group_without_a_config_file() -> None:
    directory = make_dir()
    master = spawn(
        [
            "serve",
            "tests.apps.testapp:app",
            "--listen",
            "http://127.0.0.1:0",
            "--count",
            "2",
            "--max-url-bytes",
            "64",
        ],
        directory,
    )
    try:
        master.wait_for(r"started pid=")
        port = int(master.wait_for(r"listening group=web url=http://127.0.0.1:(\d+)").group(1))
        status, body = get(("127.0.0.1", port), "/info")
        assert status == 200
        assert json.loads(body)["group"] == "web"
        assert get(("127.0.0.1", port), "/" + "x" * 100)[0] == 414  # --max-url-bytes applies
        assert not (directory / "aioworker.pid").exists()
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
    finally:
        master.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--listen", "nowhere"],
            "--listen: 'nowhere' is neither http://HOST:PORT, https://HOST:PORT nor unix:PATH",
            id="listen",
        ),
        pytest.param(["--max-headers", "0"], "--max-headers: must be at least 1", id="minimum"),
        pytest.param(
            ["--keepalive-timeout", "0"],
            "--keepalive-timeout: must be more than 0 seconds",
            id="above",
        ),
        pytest.param(["--count", "-1"], "--count: must be 0 (one per CPU) or more", id="count"),
        pytest.param(
            ["--log-level", "loud"],
            "argument --log-level: invalid choice: 'loud' (choose from",
            id="log-level",
        ),
    ],
)
def test_serve_reports_a_bad_flag_by_its_name(flags: list[str], message: str) -> None:
    result = aioworker("serve", "tests.apps.testapp:app", *flags, cwd=make_dir())
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            "aioworker.Config.single('tests.apps.testapp:app', 'http://127.0.0.1:0', 1)", id="code"
        ),
        pytest.param("'config.toml'", id="path"),
    ],
)
def test_run_starts_the_same_master_from_python(config: str) -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(config_text(ONE))
    code = f"import aioworker\nraise SystemExit(aioworker.run({config}))\n"
    master = spawn_python(["-c", code], directory)
    try:
        port = int(master.wait_for(r"listening group=web url=http://127.0.0.1:(\d+)").group(1))
        master.wait_for(r"started pid=")
        assert get(("127.0.0.1", port))[0] == 200
        assert (directory / "aioworker.pid").exists()
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
        assert not (directory / "aioworker.pid").exists()
    finally:
        master.stop()


@pytest.mark.parametrize(
    ("preload", "expected"),
    [
        pytest.param(
            False, "group web cannot start: RuntimeError: import failed on purpose", id="in-workers"
        ),
        pytest.param(
            True,
            "cannot start: <config>: groups.web.app: cannot import tests.apps.testapp:app: "
            f"RuntimeError: import failed on purpose (at {APPS / 'testapp.py'}:",
            id="preload-in-the-master",
        ),
    ],
)
def test_run_reports_the_apps_own_import_error_and_exits_1(preload: bool, expected: str) -> None:
    directory = make_dir()
    (directory / "FAIL_IMPORT").write_text("")
    code = (
        "import aioworker\n"
        "group = aioworker.GroupSettings(app='tests.apps.testapp:app', "
        "listen='http://127.0.0.1:0', "
        f"count=2, preload={preload})\n"
        "raise SystemExit(aioworker.run(aioworker.Config(groups=(group,))))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", code],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    if preload:  # one clear line from the master, not an unhandled exception
        assert "Traceback" not in result.stderr
    assert not (directory / "aioworker.pid").exists()


def test_restart_with_a_broken_app_keeps_the_running_master() -> None:
    with running_master(config_text(ONE)) as master:
        (master.directory / "FAIL_IMPORT").write_text("")
        result = aioworker("restart", cwd=master.directory)
        assert result.returncode == 2
        assert (
            "groups.web.app: cannot import tests.apps.testapp:app: "
            "RuntimeError: import failed on purpose"
        ) in result.stderr
        assert master.proc.poll() is None
        assert get(master.url("web"))[0] == 200


ABORTING = """
import aioworker
from aioworker.supervisor.hooks import Hook

class NeedsAPort(Hook):
    def master_started(self, master):
        master.abort_start("metrics.listen: http://127.0.0.1:1: address already in use")

config = aioworker.load_config("config.toml")
raise SystemExit(aioworker.run(config, daemon=True, hooks=[NeedsAPort()]))
"""


def test_a_hook_that_aborts_the_start_is_reported_by_the_foreground_process() -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(config_text(ONE))
    (directory / "aborting.py").write_text(ABORTING)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [PYTHON, "aborting.py"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 1
    assert "metrics.listen: http://127.0.0.1:1: address already in use" in result.stderr
    assert not (directory / "aioworker.pid").exists()


def test_stop_and_start_one_group_over_the_control_socket() -> None:
    two = ONE + ONE.replace("groups.web", "groups.task")
    directory = make_dir()
    with running_master(config_text(two), directory) as master:
        mark = master.mark()
        stopped = aioworker("stop", "-g", "task", cwd=directory)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopping task (pid" in stopped.stdout
        master.wait_for(r"exited pid=\d+ group=task", since=mark)
        status = json.loads(aioworker("status", "--json", cwd=directory).stdout)
        groups = {g["name"]: g for g in status["groups"]}
        assert groups["task"]["state"] == "stopped"
        assert groups["web"]["state"] == "running"
        assert get(master.url("web"))[0] == 200

        mark = master.mark()
        started = aioworker("start", "-g", "task", cwd=directory)
        assert started.returncode == 0, started.stderr
        master.wait_for(r"ready group=task slot=0 pid=\d+", since=mark)
        assert get(master.url("task"))[0] == 200
        unknown = aioworker("stop", "-g", "nope", cwd=directory)
        assert unknown.returncode == 2
        assert "no group named nope" in unknown.stderr
