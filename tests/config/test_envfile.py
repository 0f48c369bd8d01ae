"""env_file parsing and its mode checks, on real files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from aioworker.config.envfile import read_env_file
from tests.helpers.master import make_dir


def _file(text: str, mode: int = 0o600) -> Path:
    path = make_dir() / "app.env"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "values"),
    [
        pytest.param("A=1\nB=two words\n", {"A": "1", "B": "two words"}, id="plain"),
        pytest.param("# comment\n\n  A=1  \n", {"A": "1"}, id="comments-blanks-spaces"),
        pytest.param("export A=1\n", {"A": "1"}, id="export"),
        pytest.param("A=\"x y\"\nB='z'\n", {"A": "x y", "B": "z"}, id="quoted"),
        pytest.param("URL=postgres://u:p@h/d?x=1\n", {"URL": "postgres://u:p@h/d?x=1"}, id="eq"),
        pytest.param("A=\n", {"A": ""}, id="empty"),
        pytest.param("A=1\nA=2\n", {"A": "2"}, id="last-wins"),
    ],
)
def test_reads_key_value_lines(text: str, values: dict[str, str]) -> None:
    assert read_env_file(_file(text)) == values


@pytest.mark.parametrize(
    ("text", "mode", "problem"),
    [
        pytest.param("A=1\n", 0o644, "is open to other users (mode 644)", id="world-readable"),
        pytest.param("A=1\n", 0o602, "is open to other users (mode 602)", id="world-writable"),
        pytest.param("A=1\n", 0o660, "can be changed by another user (mode 660", id="group-w"),
        pytest.param("A\n", 0o600, "app.env:1: expected KEY=VALUE", id="no-equals"),
        pytest.param("A=1\n1A=2\n", 0o600, "app.env:2: expected KEY=VALUE", id="bad-name"),
    ],
)
def test_refuses_bad_files(text: str, mode: int, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        read_env_file(_file(text, mode))


def test_group_readable_by_root_group_is_accepted() -> None:
    path = _file("A=1\n", 0o640)
    assert os.stat(path).st_uid == os.geteuid()
    assert read_env_file(path) == {"A": "1"}


def test_missing_or_unreadable_file_names_it() -> None:
    path = make_dir() / "absent.env"
    with pytest.raises(ValueError, match=f"cannot read {path}: No such file"):
        read_env_file(path)
    bad = _file("")
    bad.write_bytes(b"A=\xff\n")
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_env_file(bad)
