"""Errors a user reads: an app's own import error with its cause, uvicorn's flags and keys
answered with aioworker's."""

from __future__ import annotations

import pytest

from tests.helpers.daemon import cli as aioworker
from tests.helpers.master import make_dir

DEEP_CONFIG = """
[groups.web]
app = "deep.app:app"
listen = "http://127.0.0.1:0"
count = 1
"""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["check"], id="check"),
        pytest.param(["start"], id="start"),
        pytest.param(["serve", "deep.app:app", "--listen", "http://127.0.0.1:0"], id="serve"),
    ],
)
def test_an_import_error_shows_its_type_and_where_it_was_raised(argv: list[str]) -> None:
    directory = make_dir()
    (directory / "deep").mkdir()
    (directory / "deep" / "__init__.py").write_text("")
    (directory / "deep" / "app.py").write_text(
        "from deep.settings import DATABASE\n\n\nasync def app(scope, receive, send): ...\n"
    )
    (directory / "deep" / "settings.py").write_text(
        'import os\n\nDATABASE = os.environ["DATABASE_URL"]\n'
    )
    (directory / "config.toml").write_text(DEEP_CONFIG)
    result = aioworker(*argv, cwd=directory)
    assert result.returncode == 2, result.stderr
    assert (
        "cannot import deep.app:app: KeyError: 'DATABASE_URL' "
        "(at deep/app.py:1 <module> -> deep/settings.py:3 <module>)"
    ) in result.stderr
    assert "Traceback" not in result.stderr  # one line, not a dump


@pytest.mark.parametrize(
    ("flags", "hint"),
    [
        pytest.param(["--host", "0.0.0.0"], "--listen http://0.0.0.0:8000", id="host"),
        pytest.param(["--port=9000"], "--listen http://127.0.0.1:9000", id="port"),
        pytest.param(["--workers", "4"], "--count 4", id="workers"),
        pytest.param(["--reload"], "--watch", id="reload"),
        pytest.param(["--uds", "/run/app.sock"], "--listen unix:/run/app.sock", id="uds"),
        pytest.param(["--ssl-certfile", "c.pem"], "--certfile c.pem", id="ssl-certfile"),
        pytest.param(["--ssl-ca-certs", "ca.pem"], "--ca-certs ca.pem", id="ssl-ca-certs"),
    ],
)
def test_serve_answers_uvicorns_flags_with_its_own(flags: list[str], hint: str) -> None:
    result = aioworker("serve", *flags, "tests.apps.testapp:app", cwd=make_dir())
    assert result.returncode == 2
    given = " ".join(flags).replace("=", " ")
    assert result.stderr == f"aioworker serve: {given}: uvicorn's flag; here it is {hint}\n"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        pytest.param("workers = 2", "workers: unknown key; did you mean count?", id="workers"),
        pytest.param("port = 8000", "port: unknown key; did you mean listen?", id="port"),
    ],
)
def test_a_key_of_another_server_names_ours(key: str, hint: str) -> None:
    directory = make_dir()
    (directory / "config.toml").write_text(
        DEEP_CONFIG.replace("count = 1", key).replace("deep.app", "tests.apps.testapp")
    )
    result = aioworker("check", cwd=directory)
    assert result.returncode == 2
    assert f"{directory / 'config.toml'}: groups.web.{hint}" in result.stderr
