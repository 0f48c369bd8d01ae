"""A master killed with -9: its workers end even inside blocking code, and a new start on the
same port succeeds at once, past the stale pid file and control socket."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time

from tests.helpers.master import config_text, get, group_table, make_dir, running_master

GRACEFUL = 1.0


def _request_ignoring_errors(address: tuple[str, int], path: str) -> None:
    try:
        get(address, path)
    except OSError:
        pass  # the worker serving it is killed


def test_new_start_after_the_master_was_killed_while_a_worker_blocks() -> None:
    directory = make_dir()
    with running_master(config_text(group_table("web", 1), graceful=GRACEFUL), directory) as first:
        port = first.ports["web"]
        pid = first.ready_pids("web")[0]
        handle = os.pidfd_open(pid)
        blocked = threading.Thread(
            target=_request_ignoring_errors, args=(first.url("web"), "/task/block?seconds=60")
        )
        blocked.start()
        first.wait_for(r"BLOCKING pid=")
        first.proc.kill()
        first.wait()
        killed = time.monotonic()
        try:
            # The app sleeps for 60 s in the loop's thread: only SIGKILL ends it.
            readable, _, _ = select.select([handle], [], [], 10)
        finally:
            os.close(handle)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a failed test must not leave it behind
        assert readable, "the worker outlived its master"
        assert time.monotonic() - killed < GRACEFUL + 1.0 + 1.5
        blocked.join(10)
    assert (directory / "aioworker.pid").exists()
    assert (directory / "aioworker.sock").exists()
    again = config_text(group_table("web", 1, listen=f'"http://127.0.0.1:{port}"'))
    with running_master(again.replace('listen = "http://127.0.0.1:0"\n', ""), directory) as second:
        assert second.ports["web"] == port
        assert get(second.url("web"))[0] == 200
        assert second.all_matches(r"removing stale pid file")
        assert second.all_matches(r"removing stale control socket")
