"""Errors a user reads: an app's own import error with its cause, uvicorn's flags and keys
answered with aioworker's."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import aioworker
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
