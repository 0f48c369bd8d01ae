"""Development reload: both watchers report changed .py files, and only those."""

from __future__ import annotations

import os
import select
from pathlib import Path

import pytest

from aioworker.supervisor.watch import PollingWatcher, ThreadWatcher, make_watcher


def touch_later(path: Path) -> None:
    """Rewrite `path` with a modification time one second later than before."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(path.read_text() + "#\n" if path.exists() else "x = 1\n")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "notes.txt").write_text("")
    return tmp_path


def test_polling_watcher_reports_changed_new_and_removed_python_files(tmp_path: Path) -> None:
    root = tree(tmp_path)
    watcher = PollingWatcher([root])
    assert watcher.changed() == []
    touch_later(root / "pkg" / "mod.py")
    assert watcher.changed() == [str(root / "pkg" / "mod.py")]
    assert watcher.changed() == []
    (root / "new.py").write_text("")
    assert watcher.changed() == [str(root / "new.py")]
    (root / "new.py").unlink()
    assert watcher.changed() == [str(root / "new.py")]
    # Not Python, or caches: ignored.
    touch_later(root / "notes.txt")
    (root / "__pycache__" / "mod.cpython-311.py").write_text("")
    assert watcher.changed() == []


def test_watchfiles_watcher_wakes_a_selector_on_change(tmp_path: Path) -> None:
    root = tree(tmp_path)
    watcher = ThreadWatcher([root])
    try:
        assert watcher.ready.wait(10)
        assert watcher.fileno is not None
        (root / "notes.txt").write_text("ignored")
        touch_later(root / "pkg" / "mod.py")
        readable, _, _ = select.select([watcher.fileno], [], [], 10)
        assert readable == [watcher.fileno]
        assert watcher.changed() == [str(root / "pkg" / "mod.py")]
    finally:
        watcher.close()


def test_a_watched_file_may_vanish_and_come_back(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    watcher = PollingWatcher([app])
    app.unlink()  # an editor's atomic save: gone for a moment
    assert watcher.changed() == [str(app)]
    app.write_text("x = 2\n")
    assert watcher.changed() == [str(app)]


def test_missing_paths_are_reported_and_the_others_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tree(tmp_path)
    watcher = make_watcher([root, root / "nope"])
    try:
        assert f"watch: {root / 'nope'}: no such file or directory" in caplog.text
        touch_later(root / "pkg" / "mod.py")
        if watcher.fileno is not None:
            readable, _, _ = select.select([watcher.fileno], [], [], 10)
            assert readable == [watcher.fileno]
        assert watcher.changed() == [str(root / "pkg" / "mod.py")]
    finally:
        watcher.close()
