"""The access log as a real master writes it: every request's line, whole, from the worker that
answered it, when the workers' lines share the master's log file through its relay pipe."""

from __future__ import annotations

import asyncio
import os
import re
import signal

from tests.helpers.burst import burst
from tests.helpers.daemon import alive, children, daemon
from tests.helpers.master import config_text, group_table, make_dir
from tests.helpers.wait import wait_until

REQUESTS = 400
LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[(?P<pid>\d+)\] INFO aioworker\.access: "
    r'127\.0\.0\.1:\d+ - "GET /echo\?n=(?P<n>\d+)&pad=x+ HTTP/1\.1" 200 \d+ \d+\.\dms "-"'
)


def test_every_line_whole_in_the_log_file_from_two_workers_at_once() -> None:
    directory = make_dir()
    server = 'log_file = "aw.log"\nlog_level = "info"\n'
    groups = group_table("web", 2, access_log="true")
    (directory / "config.toml").write_text(config_text(groups, server=server))
    log = directory / "aw.log"
    with daemon(directory) as d:
        port = int(log.read_text().split("url=http://127.0.0.1:")[1].split()[0])
        workers = set(children(d.pid))
        pad = "x" * 200  # long lines: a worker's batch spans several PIPE_BUF writes
        paths = [f"/echo?n={n}&pad={pad}" for n in range(REQUESTS)]
        answers = asyncio.run(burst(("127.0.0.1", port), paths))
        assert [a.status for a in answers] == [200] * REQUESTS
        os.kill(d.pid, signal.SIGTERM)  # the master writes what the relay holds, then exits
        wait_until(lambda: not alive(d.pid), 30, "the master's exit")
    access = [line for line in log.read_text().splitlines() if "aioworker.access" in line]
    broken = [line for line in access if not LINE.fullmatch(line)]
    assert not broken, broken[:3]
    matches = [LINE.fullmatch(line) for line in access]
    assert sorted(int(m["n"]) for m in matches if m) == list(range(REQUESTS))
    assert {int(m["pid"]) for m in matches if m} <= workers
