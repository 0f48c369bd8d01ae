"""The import check at `start` runs as the workers will: their user, group and environment."""

from __future__ import annotations

import os

from tests.helpers.faults import unix_user
from tests.helpers.master import config_text, get, make_dir, running_master

# An app that keeps state beside it on import, as a cache or an SQLite file would: created by
# root, the file would refuse the workers later (PermissionError on open for appending).
APP = """
import os

with open(os.path.join(os.environ["STATE_DIR"], "state"), "a") as stream:
    stream.write(f"{os.getuid()} {os.getgid()} {os.environ.get('GREETING')}\\n")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_the_import_check_runs_as_the_group_user_with_its_environment() -> None:
    directory = make_dir(world_readable=True)
    (directory / "stateful.py").write_text(APP)
    state = directory / "data"
    state.mkdir()
    with unix_user() as user:
        os.chown(state, user.pw_uid, user.pw_gid)
        config = config_text(
            f"""
            [groups.web]
            app = "stateful:app"
            listen = "http://127.0.0.1:0"
            count = 1
            user = "{user.pw_name}"
            env = {{ STATE_DIR = "{state}", GREETING = "hello" }}
            """
        )
        with running_master(config, directory) as master:
            assert get(master.url("web"))[0] == 200
        lines = (state / "state").read_text().splitlines()
        # The check's import, then the worker's: both as the user, with the group's env.
        assert lines == [f"{user.pw_uid} {user.pw_gid} hello"] * 2
        assert (state / "state").stat().st_uid == user.pw_uid
