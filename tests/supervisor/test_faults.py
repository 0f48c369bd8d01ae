"""The master under fault injection: every signal and control command while its log, pid and
control socket directories are missing, read-only or full. It must stay up and serving."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from tests.helpers.daemon import Daemon, alive, children, daemon
from tests.helpers.faults import fill, read_only, tmpfs
from tests.helpers.master import Load, config_text, group_table, make_dir
from tests.helpers.wait import wait_until


def _port(log: Path) -> int:
    return int(log.read_text().split("listening group=web url=http://127.0.0.1:")[1].split()[0])


def _logged(log: Path, line: str) -> Callable[[], bool]:
    return lambda: line in log.read_text()


def _count(d: Daemon, group: str, n: int) -> None:
    wait_until(lambda: d.settled(group, n), 20, f"{n} ready workers in {group}")


def test_master_survives_signals_and_commands_with_broken_directories() -> None:
    root = make_dir()
    with tmpfs(root / "logs") as logs, tmpfs(root / "run") as run, tmpfs(root / "ctl") as ctl:
        (logs / "d").mkdir()
        (run / "p").mkdir()
        server = (
            'log_file = "logs/d/aw.log"\npid_file = "run/p/aw.pid"\n'
            'control_socket = "ctl/c/aw.sock"\n'
        )
        config = config_text(group_table("web", 2) + group_table("spare", 1), server=server)
        (root / "config.toml").write_text(config)
        (ctl / "c").mkdir()
        with daemon(root, "ctl/c/aw.sock") as d:
            port = _port(logs / "d" / "aw.log")
            with Load(("127.0.0.1", port)) as load:
                # 1. The log and pid directories removed (renamed away).
                (logs / "d").rename(logs / "gone")
                (run / "p").rename(run / "gone")
                for sig in (signal.SIGUSR1, signal.SIGHUP):
                    os.kill(d.pid, sig)
                    d.barrier()
                (logs / "gone").rename(logs / "d")
                (run / "gone").rename(run / "p")
                # 2. Log, pid and control socket directories read-only.
                with read_only(logs / "d"), read_only(run / "p"), read_only(ctl / "c"):
                    os.kill(d.pid, signal.SIGTTIN)
                    _count(d, "web", 3)
                    for sig in (signal.SIGUSR1, signal.SIGHUP):
                        os.kill(d.pid, sig)
                        d.barrier()
                    os.kill(d.pid, signal.SIGTTOU)
                    _count(d, "web", 2)
                # 3. All three filesystems full: every write to the log fails with ENOSPC.
                fill(logs)
                fill(run)
                fill(ctl)
                for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGTTIN):
                    os.kill(d.pid, sig)
                    d.barrier()
                _count(d, "web", 3)
                for command, args in (
                    ("status", {}),
                    ("reload", {}),
                    ("reload", {"groups": ["spare"]}),
                    ("stop", {"groups": ["spare"]}),
                    ("start", {"groups": ["spare"]}),
                ):
                    d.command(command, **args)
                _count(d, "spare", 1)
                # 4. The control socket's directory gone: signals still work.
                (ctl / "c").rename(ctl / "gone")
                # Three web workers and one spare, once the reloads' old workers have left (one
                # leaving at the moment of the TTOU would make the count skip a number).
                wait_until(lambda: len(children(d.pid)) == 4, 20, "the old workers' exit")
                os.kill(d.pid, signal.SIGTTOU)
                wait_until(lambda: len(children(d.pid)) == 3, 20, "one worker fewer")
                os.kill(d.pid, signal.SIGUSR1)
                os.kill(d.pid, signal.SIGHUP)
                (ctl / "gone").rename(ctl / "c")
                d.barrier()
                _count(d, "web", 2)
                # Space again: the workers' output lost meanwhile is counted in the log.
                (logs / "filler").unlink()
                os.kill(d.pid, signal.SIGHUP)  # new workers: their import lines
                wait_until(_logged(logs / "d" / "aw.log", "bytes of worker output lost"), 20)
                served = load.ok
                wait_until(lambda: load.ok > served + 20, 20, "requests after the faults")
            assert load.failures == []
            assert alive(d.pid)
            # TERM last: a graceful stop with the pid directory full.
            workers = children(d.pid)
            os.kill(d.pid, signal.SIGTERM)
            wait_until(lambda: not alive(d.pid), 30, "the master's exit")
            wait_until(lambda: not any(alive(p) for p in workers), 30, "the workers' exit")


def test_master_survives_running_out_of_descriptors() -> None:
    root = make_dir()
    (root / "config.toml").write_text(
        config_text(group_table("web", 2), server='log_file = "aw.log"\n')
    )
    log = root / "aw.log"
    with daemon(root) as d:
        port = _port(log)
        with Load(("127.0.0.1", port)) as load:
            limits = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)
            # The limit bounds descriptor numbers: at the lowest free one, no open succeeds.
            in_use = {int(fd) for fd in os.listdir(f"/proc/{d.pid}/fd")}
            lowest = min(set(range(len(in_use) + 1)) - in_use)
            resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (lowest, limits[1]))
            try:
                for sig, line in (
                    (signal.SIGUSR1, "cannot reopen the log file: [Errno 24]"),
                    (signal.SIGHUP, "reload aborted, the running configuration is kept"),
                    (signal.SIGTTIN, "cannot start a worker group=web slot=2"),
                ):
                    os.kill(d.pid, sig)
                    wait_until(_logged(log, line), 20, line)
            finally:
                resource.prlimit(d.pid, resource.RLIMIT_NOFILE, limits)
            # Descriptors again: the slot that could not start is retried and comes up.
            _count(d, "web", 3)
            served = load.ok
            wait_until(lambda: load.ok > served + 20, 20, "requests after the fault")
        assert load.failures == []
        assert alive(d.pid)
