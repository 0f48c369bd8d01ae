"""The set-up scripts on a fresh copy of the repository: `scripts/serve` installs only what
serving needs, once; `scripts/install` (which `scripts/test` runs) skips an install already done."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fresh_copy(target: Path) -> Path:
    """The repository's files as a clone would have them (no .venv), in `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(copy: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        argv, cwd=copy, env=env, capture_output=True, text=True, timeout=240, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_sets_up_only_what_serving_needs_and_only_once(tmp_path: Path) -> None:
    copy = _fresh_copy(tmp_path)
    first = _run(copy, "scripts/serve", "--help")  # `start --help`: set up, then exit 0
    assert first.returncode == 0, first.stderr
    assert "setting up .venv (aioworker)" in first.stdout
    python = str(copy / ".venv" / "bin" / "python")
    assert _run(copy, python, "-c", "import aioworker, uvloop, httptools").returncode == 0
    # The test toolchain is not what serving needs.
    for module in ("pytest", "mypy", "ruff"):
        assert _run(copy, python, "-c", f"import {module}").returncode != 0, module
    again = _run(copy, "scripts/serve", "--help")
    assert again.returncode == 0, again.stderr
    assert "setting up" not in again.stdout + again.stderr  # no pip on the second start
    assert "usage: aioworker start" in again.stdout
    assert _run(copy, "scripts/install", "").stdout == ""
