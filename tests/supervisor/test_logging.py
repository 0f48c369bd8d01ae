"""The log file: rotation after the workers dropped privileges (the master alone writes it), and
what a reload changes in logging (log_file, log_level)."""

from __future__ import annotations

import os
import re
import signal

from tests.helpers.daemon import alive, children, daemon
from tests.helpers.faults import unix_user
from tests.helpers.master import config_text, get, group_table, make_dir, running_master
from tests.helpers.wait import wait_until


def test_every_worker_line_after_usr1_is_in_the_new_file() -> None:
    directory = make_dir(world_readable=True)
    with unix_user() as user:
        server = f'log_file = "aw.log"\nuser = "{user.pw_name}"\n'
        (directory / "config.toml").write_text(config_text(group_table("web", 3), server=server))
        log, rotated = directory / "aw.log", directory / "aw.log.1"
        with daemon(directory) as d:
            port = int(log.read_text().split("url=http://127.0.0.1:")[1].split()[0])
            workers = children(d.pid)
            assert len(workers) == 3
            assert all(os.stat(f"/proc/{p}").st_uid == user.pw_uid for p in workers)
            log.rename(rotated)
            os.kill(d.pid, signal.SIGUSR1)
            d.barrier()
            # The workers' own output (the app's marker) and their log records at the stop.
            assert get(("127.0.0.1", port), "/slow?seconds=0")[0] == 200
            os.kill(d.pid, signal.SIGTERM)
            wait_until(lambda: not alive(d.pid), 30, "the master's exit")
        new = log.read_text()
        for pid in workers:
            assert re.search(rf"\[{pid}\] INFO aioworker.worker: draining group=web", new), new
        assert re.search(r"SLOW STARTED pid=\d+", new)
        assert "draining" not in rotated.read_text()
        assert "cannot reopen" not in new
        # Still root's file: the workers' user never had to be able to open it.
        assert (os.stat(log).st_uid, os.stat(log).st_mode & 0o777) == (0, 0o640)


def test_reload_moves_the_log_to_a_new_log_file_or_says_why_not() -> None:
    directory = make_dir()
    config = directory / "config.toml"
    text = config_text(group_table("web", 1), server='log_file = "a.log"\n')
    config.write_text(text)
    first, second = directory / "a.log", directory / "b.log"
    with daemon(directory) as d:
        # A directory that does not exist: the running file is kept, the key named.
        config.write_text(text.replace('"a.log"', '"missing/b.log"'))
        os.kill(d.pid, signal.SIGHUP)
        d.barrier()
        assert "reload: server.log_file: cannot open" in first.read_text()
        config.write_text(text.replace('"a.log"', '"b.log"'))
        os.kill(d.pid, signal.SIGHUP)
        d.barrier()
        os.kill(d.pid, signal.SIGTTIN)
        wait_until(lambda: "ready group=web slot=1" in second.read_text(), 20, "a worker in b.log")
    assert f"reload: the log continues in {second}" in first.read_text()
    assert "ready group=web slot=1" not in first.read_text()
    assert "restart the master" not in first.read_text() + second.read_text()


def test_reload_applies_the_log_level_and_names_what_needs_a_restart() -> None:
    directory = make_dir()
    text = config_text(group_table("web", 1))
    with running_master(text, directory) as master:
        config = directory / "config.toml"
        config.write_text(
            text.replace("[server]\n", '[server]\nlog_level = "warning"\nuser = "nobody"\n')
        )
        since = master.mark()
        master.signal(signal.SIGHUP)
        master.wait_for(r"WARNING aioworker.master: reload: server.user changed: restart", since)
        master.signal(signal.SIGTTIN)  # its INFO line must not appear
        # Handled before the next HUP: the kernel delivers pending signals lowest number first,
        # so a HUP sent while TTIN still waits would restore INFO before TTIN's line.
        wait_until(lambda: len(children(master.proc.pid)) == 2, 20, "the TTIN's new worker")
        config.write_text(text)
        master.signal(signal.SIGHUP)
        master.wait_for(r"INFO aioworker.master: reloading group=web generation=2", since)
        assert not master.all_matches(r"count group=web now 2", since)
        assert not master.all_matches(
            r"INFO aioworker.master: reloading group=web generation=1", since
        )
