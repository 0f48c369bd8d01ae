"""The master end to end: real processes, real signals, real sockets on 127.0.0.1 port 0."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aioworker.supervisor.plan import backoff_delay
from tests.helpers.client import request
from tests.helpers.master import (
    PYTHON,
    Load,
    MasterProcess,
    config_text,
    get,
    group_table,
    listening_inodes,
    make_dir,
    running_master,
    spawn_python,
)

TWO_GROUPS = group_table("web", 2) + group_table("task", 2, routes='["/task"]', reuse_port="false")


def test_a_worker_freezes_its_start_up_heap_before_it_serves() -> None:
    """Full collections skip what start-up made: a burst's collection paused a loop 35 ms."""
    with running_master(config_text(group_table("web", 1))) as master:
        status, body = get(master.url("web"))
    assert status == 200
    assert json.loads(body)["frozen"] > 10_000  # the interpreter's, the engine's and the app's


@pytest.mark.slow
def test_isolation_web_answers_while_every_task_worker_is_blocked() -> None:
    with running_master(config_text(TWO_GROUPS)) as master:
        since = master.mark()
        results: list[object] = []

        def block() -> None:
            try:
                results.append(get(master.url("task"), "/task/block?seconds=1.5", timeout=20)[0])
            except OSError as exc:
                results.append(exc)

        blockers = [threading.Thread(target=block) for _ in range(4)]
        for thread in blockers:
            thread.start()
        task_pids = set(master.ready_pids("task").values())
        blocked: set[int] = set()
        while blocked != task_pids:
            line = master.wait_for(r"BLOCKING pid=(\d+)", since)
            blocked.add(int(line.group(1)))
            since = master.lines.index(line.string, since) + 1
        # Every task worker is now stuck in time.sleep; the web group must not notice.
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            status, body = get(master.url("web"), "/")
            latencies.append(time.monotonic() - started)
            assert status == 200
            assert json.loads(body)["group"] == "web"
        assert max(latencies) < 0.5, latencies
        assert any(t.is_alive() for t in blockers), "task requests ended before the web ones"
        for thread in blockers:
            thread.join(30)
        assert results == [200] * 4


@pytest.mark.slow
def test_crash_worker_is_replaced_on_the_same_socket_without_failing_other_requests() -> None:
    config = config_text(group_table("web", 2))
    with running_master(config) as master, Load(master.url("web"), "/info") as load:
        load.wait_ok(50)
        victim = master.ready_pids("web")[0]
        sockets_before = listening_inodes(victim)
        since = master.mark()
        os.kill(victim, signal.SIGKILL)
        died = master.wait_for(rf"worker died pid={victim} .*killed by SIGKILL", since)
        assert "perhaps out of memory" in died.string
        replaced = master.wait_for(r"ready group=web slot=0 pid=(\d+)", since)
        new_pid = int(replaced.group(1))
        assert new_pid != victim
        index = len(load.pids)
        load.wait_ok(200)
        assert new_pid in load.pids_since(index), "the replacement never answered"
        # The replacement accepts on the very socket the master kept (same inode).
        assert sockets_before & listening_inodes(new_pid)
    # A sequential client has at most one request in flight on the killed worker.
    assert len(load.failures) <= 1, load.failures


@pytest.mark.slow
@pytest.mark.parametrize("reuse_port", ["true", "false"], ids=["reuse-port", "shared-socket"])
def test_reload_under_load_loses_nothing_and_replaces_every_pid(reuse_port: str) -> None:
    config = config_text(
        group_table("web", 2, reuse_port=reuse_port),
        graceful=3.0,
    )
    with running_master(config) as master:
        first = set(master.ready_pids("web").values())
        with Load(master.url("web"), "/info") as load, Load(master.url("web"), "/info") as other:
            load.wait_ok(30)
            for generation in (1, 2, 3):
                since = master.mark()
                master.signal(signal.SIGHUP)
                master.wait_for(rf"reloaded group=web generation={generation} ", since)
                load.wait_ok(30)
            index = len(load.pids)
            load.wait_ok(50)
            final = load.pids_since(index)
        assert load.failures == []
        assert other.failures == []
        assert load.ok + other.ok > 200
        assert final.isdisjoint(first)
        assert final == set(master.ready_pids("web", since).values())


@pytest.mark.slow
def test_graceful_stop_finishes_requests_refuses_new_ones_and_removes_the_pid_file() -> None:
    config = config_text(group_table("web", 1))
    with running_master(config) as master:
        pid_file = master.directory / "aioworker.pid"
        assert int(pid_file.read_text()) == master.proc.pid
        address = master.url("web")
        outcome: list[tuple[int, bytes]] = []
        slow = threading.Thread(target=lambda: outcome.append(get(address, "/slow?seconds=1.5")))
        # (an exception in the thread leaves `outcome` empty and fails the assertion below)
        slow.start()
        master.wait_for(r"SLOW STARTED")
        since = master.mark()
        master.signal(signal.SIGTERM)
        master.wait_for(r"draining group=web", since)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=5)
        slow.join(10)
        assert outcome
        assert outcome[0][0] == 200
        assert master.wait(10) == 0
        assert not pid_file.exists()


@pytest.mark.slow
def test_group_whose_app_fails_backs_off_while_the_other_group_serves() -> None:
    directory = make_dir()
    with running_master(config_text(TWO_GROUPS), directory) as master:
        (directory / "FAIL_IMPORT").write_text("")
        since = master.mark()
        for pid in master.ready_pids("task").values():
            os.kill(pid, signal.SIGKILL)
        pattern = r"group failing group=task: (\d+) consecutive failures, next try in ([\d.]+)s"
        master.wait_for(r"group failing group=task: 4 consecutive", since)
        seen = {int(m.group(1)): float(m.group(2)) for m in master.all_matches(pattern, since)}
        # Exponential: 1 s after the third failure in a row, 2 s after the fourth.
        assert seen[3] == pytest.approx(backoff_delay(3), abs=0.05) == 1.0
        assert seen[4] == pytest.approx(backoff_delay(4), abs=0.05) == 2.0
        assert master.all_matches(r"worker died .* group=task .*import failed on purpose", since)
        # Meanwhile the web group answers as usual, and the master stays up.
        for _ in range(5):
            status, body = get(master.url("web"), "/info")
            assert status == 200
            assert json.loads(body)["group"] == "web"
        assert master.proc.poll() is None
        shown = subprocess.run(
            [PYTHON, "-m", "aioworker", "status"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
        states = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines() if line}
        assert states["task"] == "failing"
        assert states["web"] == "running"
        assert "import failed on purpose" in shown.stdout
        (directory / "FAIL_IMPORT").unlink()
        master.wait_for(r"ready group=task slot=\d+", since)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param(
            {"FAIL_STARTUP": "1"}, "database unreachable on purpose", id="lifespan-startup-fails"
        ),
    ],
)
def test_start_fails_with_the_apps_own_error(setup: dict[str, str], expected: str) -> None:
    config = config_text(TWO_GROUPS)
    with running_master(config, env=setup, wait_started=False) as master:
        assert master.wait(30) == 1
        master.wait_for(rf"group \w+ cannot start: .*{expected}")
        assert not (master.directory / "aioworker.pid").exists()


def test_env_table_group_variables_and_ttin_ttou() -> None:
    config = config_text(
        group_table("web", 1)
        + '[groups.web.env]\nGREETING = "hello"\n'
        + group_table("side", 1, routes='["/side"]', strict_routes="true")
    )
    with running_master(config) as master:
        info = json.loads(get(master.url("web"), "/info")[1])
        assert info == {**info, "group": "web", "worker": "0", "env": "hello"}
        # Process titles (setproctitle is in the test extra).
        title = Path(f"/proc/{info['pid']}/cmdline").read_bytes().split(b"\0")[0]
        assert title == b"aioworker: worker web[0]"
        master_title = Path(f"/proc/{master.proc.pid}/cmdline").read_bytes()
        assert master_title.startswith(b"aioworker: master ")
        side = json.loads(get(master.url("side"), "/side/info")[1])
        assert side["group"] == "side"
        assert side["env"] is None
        # strict_routes: the side group refuses paths outside its routes.
        assert get(master.url("side"), "/info")[0] == 404
        assert get(master.url("web"), "/side/info")[0] == 200  # web has no strict_routes
        since = master.mark()
        master.signal(signal.SIGTTIN)
        master.wait_for(r"ready group=web slot=1 pid=", since)
        since = master.mark()
        master.signal(signal.SIGTTOU)
        stopped = master.wait_for(r"stopping pid=(\d+) group=web slot=1: count reduced", since)
        master.wait_for(rf"exited pid={stopped.group(1)} ", since)
        # Never below one worker: TTOU at one keeps it, and the next TTIN adds slot 1 again.
        since = master.mark()
        master.signal(signal.SIGTTOU)
        master.wait_for(r"count group=web now 1", since)
        master.signal(signal.SIGTTIN)
        master.wait_for(r"ready group=web slot=1 pid=", since)
        assert not master.all_matches(r"stopping pid=\d+ group=web slot=0", since)


def test_privileges_workers_run_as_nobody_on_a_low_port() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CI runs as root)")
    port = _free_low_port()
    directory = make_dir(world_readable=True)
    # The user comes from [server] (the default), the group from the group's own table.
    config = config_text(
        f"""
        [groups.web]
        app = "tests.apps.testapp:app"
        listen = "http://127.0.0.1:{port}"
        count = 1
        group = "nogroup"
        """,
        server='user = "nobody"\n',
    )
    with running_master(config, directory) as master:
        status, body = get(("127.0.0.1", port), "/info")
        assert status == 200
        info = json.loads(body)
        assert info["uid"] == 65534
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{info['pid']}/status").read_text().splitlines()
        )
        assert fields["Uid"].split() == ["65534"] * 4
        assert fields["Gid"].split() == ["65534"] * 4
        assert "0" not in fields["Groups"].split()  # root's supplementary groups are gone
        assert os.stat(f"/proc/{master.proc.pid}").st_uid == 0  # the master keeps root


def _free_low_port() -> int:
    for port in range(1023, 899, -1):
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        return port
    raise AssertionError("no free port in 900-1023")


def test_unix_socket_group_serves_and_removes_its_socket_file() -> None:
    directory = make_dir()
    path = directory / "web.sock"
    config = config_text(f"""
        [groups.web]
        app = "tests.apps.testapp:app"
        listen = "unix:{path}"
        count = 2
    """)
    with running_master(config, directory) as master:
        response = request(str(path), b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (response.version, response.status) == ("1.1", 200)
        assert b'"group": "web"' in response.body
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
    assert not path.exists()


def test_main_group_runs_a_supervised_coroutine_restarted_after_a_crash() -> None:
    config = config_text(
        group_table("web", 1)
        + '[groups.consumer]\nmain = "tests.apps.testapp:consume"\ncount = 2\n'
    )
    with running_master(config) as master:
        first = master.wait_for(r"CONSUMING pid=(\d+) worker=0")
        master.wait_for(r"CONSUMING pid=(\d+) worker=1")
        since = master.mark()
        os.kill(int(first.group(1)), signal.SIGKILL)
        master.wait_for(r"worker died pid=\d+ group=consumer slot=0 unexpectedly", since)
        again = master.wait_for(r"CONSUMING pid=(\d+) worker=0", since)
        assert again.group(1) != first.group(1)
        since = master.mark()
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
        assert len(master.all_matches(r"CONSUMER CANCELLED", since)) == 2


def test_preload_imports_the_app_once_in_the_master() -> None:
    config = config_text(group_table("web", 2, preload="true"))
    with running_master(config) as master:
        imported = {int(m.group(1)) for m in master.all_matches(r"IMPORTED testapp pid=(\d+)")}
        # (`start` also imports it once in a throwaway child to check it before binding.)
        assert master.proc.pid in imported
        assert imported.isdisjoint(master.ready_pids("web").values())
        since = master.mark()
        os.kill(master.ready_pids("web")[0], signal.SIGKILL)
        master.wait_for(r"ready group=web slot=0", since)
        master.signal(signal.SIGHUP)
        master.wait_for(r"reload: group=web uses preload", since)
        master.wait_for(r"reloaded group=web generation=1", since)
        assert master.all_matches(r"IMPORTED testapp", since) == []


def test_preload_imports_in_the_master_and_calls_the_factory_in_each_worker() -> None:
    config = config_text("""
        [groups.web]
        app = "tests.apps.testapp:make_app"
        factory = true
        preload = true
        listen = "http://127.0.0.1:0"
        count = 2
    """)
    with running_master(config) as master:
        imported = {int(m.group(1)) for m in master.all_matches(r"IMPORTED testapp pid=(\d+)")}
        assert master.proc.pid in imported
        built = {int(m.group(1)) for m in master.all_matches(r"FACTORY pid=(\d+)")}
        assert built == set(master.ready_pids("web").values())
        assert get(master.url("web"), "/info")[0] == 200


def test_max_requests_recycles_a_worker_after_its_replacement_is_ready() -> None:
    config = config_text(group_table("web", 1, max_requests="20"))
    with running_master(config) as master:
        first = master.ready_pids("web")[0]
        since = master.mark()
        with Load(master.url("web"), "/info") as load:
            master.wait_for(rf"recycling pid={first} group=web slot=0: max_requests", since)
            ready = master.wait_for(r"ready group=web slot=0 pid=(\d+)", since)
            master.wait_for(rf"stopping pid={first} group=web slot=0: max_requests", since)
            master.wait_for(rf"exited pid={first} ", since)
            index = len(load.pids)
            load.wait_ok(10)
            assert load.pids_since(index) == {int(ready.group(1))}
        assert load.failures == []


def test_failed_reload_keeps_the_old_workers_serving() -> None:
    directory = make_dir()
    with running_master(config_text(TWO_GROUPS), directory) as master:
        old = set(master.ready_pids("web").values())
        (directory / "FAIL_IMPORT").write_text("")
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reload failed group=web slot=0: .*import failed on purpose", since)
        master.wait_for(r"reload failed group=task slot=0: .*import failed on purpose", since)
        pids = {json.loads(get(master.url("web"), "/info")[1])["pid"] for _ in range(20)}
        assert pids <= old
        # The next reload, with the code fixed, goes through.
        (directory / "FAIL_IMPORT").unlink()
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reloaded group=web generation=2", since)


def test_reload_applies_count_and_limits_and_names_what_needs_a_restart() -> None:
    directory = make_dir()
    with running_master(config_text(TWO_GROUPS), directory) as master:
        changed = TWO_GROUPS.replace(
            "count = 2\n\n[groups.task]", "count = 3\nmax_url_bytes = 64\n\n[groups.task]"
        )
        changed = changed.replace(
            'routes = ["/task"]\nreuse_port = false', 'routes = ["/task"]\nreuse_port = true'
        )
        (directory / "config.toml").write_text(config_text(changed))
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reload: group=web count 2 -> 3", since)
        master.wait_for(r"reload: groups.task.reuse_port changed: restart the master", since)
        master.wait_for(r"reloaded group=web generation=1 pids=\d+,\d+,\d+", since)
        assert get(master.url("web"), "/" + "x" * 100)[0] == 414
        # A broken file aborts the reload and keeps everything running.
        (directory / "config.toml").write_text(config_text(TWO_GROUPS + "cout = 1\n"))
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reload aborted, the running configuration is kept: .*cout", since)
        assert get(master.url("web"), "/")[0] == 200


def test_reload_skips_groups_that_are_not_reloadable() -> None:
    directory = make_dir()
    config = config_text(TWO_GROUPS.replace("reuse_port = false", "reloadable = false"))
    with running_master(config, directory) as master:
        task = master.ready_pids("task")
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"reload: group=task is not reloadable; skipped", since)
        master.wait_for(r"reloaded group=web generation=1", since)
        assert master.all_matches(r"reloading group=task", since) == []
        pids = {json.loads(get(master.url("task"), "/task/info")[1])["pid"] for _ in range(10)}
        assert pids <= set(task.values())


def test_worker_that_never_becomes_ready_is_killed_after_start_timeout() -> None:
    config = config_text(group_table("web", 1, start_timeout="0.5"))
    with running_master(config, env={"HANG_STARTUP": "1"}, wait_started=False) as master:
        master.wait_for(r"killing pid=\d+ group=web slot=0: not ready after 0.5s")
        master.wait_for(r"group web cannot start: .*not ready after 0.5s")
        assert master.wait(20) == 1


@pytest.mark.parametrize(
    "signals",
    [
        pytest.param([signal.SIGINT, signal.SIGINT], id="second-INT"),
        pytest.param([signal.SIGQUIT], id="QUIT"),
        pytest.param([signal.SIGTERM, signal.SIGTERM], id="second-TERM"),
    ],
)
def test_fast_stop_does_not_wait_for_requests_in_progress(signals: list[int]) -> None:
    config = config_text(group_table("web", 1), graceful=30.0)
    with running_master(config) as master:
        outcome: list[object] = []

        def slow() -> None:
            try:
                outcome.append(get(master.url("web"), "/slow?seconds=30")[0])
            except OSError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        master.wait_for(r"SLOW STARTED")
        started = time.monotonic()
        for sig in signals:
            since = master.mark()
            master.signal(sig)
            master.wait_for(r"(graceful|fast) stop", since)
        assert master.wait(10) == 0
        assert time.monotonic() - started < 5
        thread.join(10)
        assert outcome != [200]


HOOKED = """
import os, sys
import aioworker
from aioworker.supervisor.hooks import Hook

def say(*words):
    os.write(2, ("HOOK " + " ".join(map(str, words)) + "\\n").encode())

class Probe(Hook):
    def master_started(self, master):
        self.r, self.w = os.pipe()
        self.pipe = "pipe:[%d]" % os.fstat(self.r).st_ino
        master.add_reader(self.r, lambda: say("readable", os.read(self.r, 10).decode()))
        master.close_in_workers(self.w)
        self.ticks = 0
        say("master_started", os.getpid())
    def before_spawn(self, master, spec):
        spec.extra["index"] = 40 + spec.slot
    def worker_spawned(self, master, worker):
        say("spawned", worker.pid, worker.extra["index"])
        if worker.slot == 1:
            os.write(self.w, b"ping")
    def worker_ready(self, master, worker):
        say("ready", worker.pid)
    def worker_started(self, ctx):
        links = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.add(os.readlink("/proc/self/fd/" + fd))
            except OSError:
                pass
        say("in_worker", os.getpid(), ctx.spec.extra["index"], ctx.server.state.requests,
            "master_fd_open" if self.pipe in links else "master_fd_closed")
    def worker_draining(self, ctx):
        say("draining", os.getpid())
    def worker_exited(self, master, worker, reason):
        say("exited", worker.pid, reason)
    def tick(self, master, now):
        self.ticks += 1
        if self.ticks == 3:
            say("ticked")
    def master_stopping(self, master):
        say("stopping")
    def master_stopped(self, master):
        say("stopped", len(master.workers))

class Broken(Hook):
    raised = False
    def tick(self, master, now):
        if not self.raised:
            self.raised = True
            raise RuntimeError("tick bug")
    def worker_started(self, ctx):
        raise RuntimeError("worker bug")

config = aioworker.Config.single("tests.apps.testapp:app", "http://127.0.0.1:0", 2)
raise SystemExit(aioworker.run(config, hooks=[Broken(), Probe()]))
"""


def test_hook_points_for_status_metrics_and_watchdog() -> None:
    directory = make_dir()
    (directory / "hooked.py").write_text(HOOKED)
    master = spawn_python(["hooked.py"], directory)
    try:
        master.wait_for(rf"HOOK master_started {master.proc.pid}")
        spawned = {
            int(m.group(2)): int(m.group(1))
            for m in [
                master.wait_for(r"HOOK spawned (\d+) (40)"),
                master.wait_for(r"HOOK spawned (\d+) (41)"),
            ]
        }
        for index, pid in spawned.items():
            master.wait_for(rf"HOOK in_worker {pid} {index} 0 master_fd_closed")
            master.wait_for(rf"HOOK ready {pid}")
        master.wait_for(r"HOOK readable ping")
        master.wait_for(r"HOOK ticked")
        # A failing hook is logged; the master, its workers and the other hooks go on.
        master.wait_for(r"hook Broken.tick failed")
        master.wait_for(r"hook Broken.worker_started failed")
        master.wait_for(r"started pid=")
        master.signal(signal.SIGTERM)
        for pid in spawned.values():
            master.wait_for(rf"HOOK draining {pid}")
            master.wait_for(rf"HOOK exited {pid} exited with code 0")
        master.wait_for(r"HOOK stopping")
        master.wait_for(r"HOOK stopped 0")
        assert master.wait(20) == 0
    finally:
        master.stop()


@pytest.mark.slow
def test_worker_whose_loop_is_blocked_is_killed_after_the_stop_timeout() -> None:
    config = config_text(group_table("web", 1), graceful=0.5)
    with running_master(config) as master:
        pid = master.ready_pids("web")[0]
        blocked = threading.Thread(
            target=_ignore_errors(get), args=(master.url("web"), "/task/block?seconds=60")
        )
        blocked.start()
        master.wait_for(r"BLOCKING pid=")
        started = time.monotonic()
        master.signal(signal.SIGTERM)
        master.wait_for(rf"killing pid={pid} group=web slot=0: still running 3.5s after stop")
        assert master.wait(10) == 0
        assert 3.0 < time.monotonic() - started < 8.0
        blocked.join(10)


def _ignore_errors(fn: Callable[..., object]) -> Callable[..., None]:
    def call(*args: object) -> None:
        try:
            fn(*args)
        except OSError:
            pass

    return call


def test_workers_stop_when_the_master_is_killed() -> None:
    with running_master(config_text(TWO_GROUPS)) as master:
        pids = [*master.ready_pids("web").values(), *master.ready_pids("task").values()]
        handles = [os.pidfd_open(pid) for pid in pids]
        try:
            master.proc.kill()
            for fd in handles:
                readable, _, _ = select.select([fd], [], [], 10)
                assert readable == [fd], "a worker outlived its master"
        finally:
            for fd in handles:
                os.close(fd)


def _spawn_with_hook(script: str, hook: str, config: str) -> tuple[MasterProcess, Path]:
    """A master run by `script`, a program that defines the Hook class named `hook`: it loads
    `config` (written as config.toml in a fresh directory) and runs it with that hook.

    Returns the master and its directory."""
    directory = make_dir()
    (directory / "config.toml").write_text(config)
    run = (
        'config = aioworker.load_config("config.toml")\n'
        f"raise SystemExit(aioworker.run(config, hooks=[{hook}()]))\n"
    )
    (directory / "hooked.py").write_text(script + run)
    return spawn_python(["hooked.py"], directory), directory


SET_COUNT = """
import aioworker
from aioworker.supervisor.hooks import Hook

class StopTaskOnce(Hook):
    done = False
    def tick(self, master, now):
        if not self.done and not master.starting:
            self.done = True
            master.set_count("task", 0)
"""


def test_set_count_zero_stops_one_group_and_the_rest_goes_on() -> None:
    master, _ = _spawn_with_hook(SET_COUNT, "StopTaskOnce", config_text(TWO_GROUPS))
    try:
        master.wait_for(r"count group=task 2 -> 0")
        task = master.ready_pids("task")
        for pid in task.values():
            master.wait_for(rf"exited pid={pid} group=task")
        port = int(master.wait_for(r"listening group=web url=http://127.0.0.1:(\d+)").group(1))
        assert get(("127.0.0.1", port), "/info")[0] == 200
        assert master.proc.poll() is None
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
    finally:
        master.stop()


STATUS_PROBE = """
import json, os
import aioworker
from aioworker.supervisor.hooks import Hook

class ShowFailing(Hook):
    shown = False
    def tick(self, master, now):
        status = master.status()
        failing = [g for g in status["groups"] if g["failing"]]
        if failing and not self.shown:
            self.shown = True
            os.write(2, ("STATUS " + json.dumps(status) + "\\n").encode())
        reloading = [g["name"] for g in status["groups"] if g["reloading"]]
        if reloading:
            os.write(2, ("RELOADING " + " ".join(reloading) + "\\n").encode())
"""


def test_status_shows_a_failing_group_with_its_last_exits() -> None:
    master, directory = _spawn_with_hook(STATUS_PROBE, "ShowFailing", config_text(TWO_GROUPS))
    try:
        master.wait_for(r"started pid=")
        (directory / "FAIL_IMPORT").write_text("")
        for pid in master.ready_pids("task").values():
            os.kill(pid, signal.SIGKILL)
        status = json.loads(master.wait_for(r"STATUS (.*)").group(1))
        groups = {g["name"]: g for g in status["groups"]}
        assert groups["task"]["failing"] is True
        assert groups["task"]["restarts"]["crash"] == 2
        assert groups["task"]["restarts"]["boot"] >= 2
        assert any("import failed on purpose" in e for e in groups["task"]["last_exits"])
        assert groups["web"]["failing"] is False
        assert groups["web"]["ready"] == groups["web"]["expected"] == 2
        assert {w["state"] for w in groups["web"]["workers"]} == {"ready"}
        assert not groups["web"]["reloading"]
        master.signal(signal.SIGHUP)
        master.wait_for(r"RELOADING web")
    finally:
        master.stop()


@pytest.mark.slow
def test_removed_slot_stops_receiving_connections_while_its_worker_drains() -> None:
    # TTOU removes slot 1. Its worker drains a slow request; meanwhile the kernel must stop
    # routing new connections to the slot's SO_REUSEPORT listener, else they wait unaccepted
    # for the whole drain and are then reset.
    config = config_text(group_table("web", 2), graceful=30.0)
    slow: list[threading.Thread] = []
    with running_master(config) as master:
        doomed = master.ready_pids("web")[1]
        while not master.all_matches(rf"SLOW STARTED pid={doomed}\b") and len(slow) < 30:
            # New connections land on either slot; send slow ones until slot 1 holds one.
            since = master.mark()
            thread = threading.Thread(
                target=_ignore_errors(get), args=(master.url("web"), "/slow?seconds=30")
            )
            thread.start()
            slow.append(thread)
            master.wait_for(r"SLOW STARTED pid=", since)
        assert master.all_matches(rf"SLOW STARTED pid={doomed}\b"), "slot 1 got no connection"
        with Load(master.url("web"), "/info") as load:
            load.wait_ok(10)
            since = master.mark()
            master.signal(signal.SIGTTOU)
            master.wait_for(rf"stopping pid={doomed} group=web slot=1: count reduced", since)
            load.wait_ok(40)
            assert not master.all_matches(rf"exited pid={doomed} ", since), "drain ended early"
            # (a request in flight at the signal may still be answered by the draining worker)
            assert set(load.pids[-30:]) == {master.ready_pids("web")[0]}
        assert len(load.failures) <= 1, load.failures  # at most the one queued at the close
    # (the fast stop on leaving ends the 30 s requests)
    for thread in slow:
        thread.join(10)


FD_LIMIT = """
import os, resource
import aioworker
from aioworker.supervisor.hooks import Hook

class FdLimit(Hook):
    # While the file LIMIT exists the master may open no new descriptor at all.
    saved = None
    def tick(self, master, now):
        if os.path.exists("LIMIT") and self.saved is None:
            self.saved = resource.getrlimit(resource.RLIMIT_NOFILE)
            in_use = len(os.listdir("/proc/self/fd")) - 1  # the listing's own fd is closed
            resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, self.saved[1]))
            os.write(2, b"LIMITED\\n")
        elif not os.path.exists("LIMIT") and self.saved is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.saved)
            self.saved = None
            os.write(2, b"UNLIMITED\\n")
"""


def test_master_survives_when_a_new_worker_cannot_be_started() -> None:
    master, directory = _spawn_with_hook(FD_LIMIT, "FdLimit", config_text(group_table("web", 1)))
    try:
        port = int(master.wait_for(r"listening group=web url=http://127.0.0.1:(\d+)").group(1))
        master.wait_for(r"started pid=")
        (directory / "LIMIT").write_text("")
        master.wait_for(r"LIMITED")
        since = master.mark()
        master.signal(signal.SIGTTIN)  # slot 1 needs a new listener and a pipe: no descriptor
        master.wait_for(r"cannot start a worker group=web slot=1: .*Too many open files", since)
        assert master.proc.poll() is None
        assert get(("127.0.0.1", port), "/info")[0] == 200  # slot 0 goes on serving
        (directory / "LIMIT").unlink()
        master.wait_for(r"UNLIMITED", since)
        master.wait_for(r"ready group=web slot=1 pid=", since)  # retried after the backoff
        master.signal(signal.SIGTERM)
        assert master.wait(20) == 0
    finally:
        master.stop()
