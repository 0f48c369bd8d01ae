"""Broken filesystems and foreign users for fault tests: tmpfs mounts, full disks, test users.

Root bypasses permission bits, so a directory "without write permission" proves nothing for a
master running as root: a small tmpfs remounted read-only, or filled up, fails its writes for
root too. Every helper undoes what it did, also when the test fails.
"""

from __future__ import annotations

import errno
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CI runs as root)")


@contextmanager
def tmpfs(path: Path, size: str = "64k") -> Iterator[Path]:
    """A small tmpfs mounted on `path` (created), unmounted afterwards."""
    need_root()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` bound read-only onto itself: new files and opens for writing fail with EROFS
    (for root too), while descriptors opened before stay writable, as after a remount."""
    need_root()
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` until a write fails with ENOSPC; the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as stream:
        for size in (4096, 1):  # whole blocks, then the last partial one
            try:
                while True:
                    stream.write(b"x" * size)
            except OSError as exc:
                error = exc.errno
            if error != errno.ENOSPC:
                raise AssertionError(f"filling {directory} failed otherwise: {error}")
    return filler


@contextmanager
def unix_user() -> Iterator[pwd.struct_passwd]:
    """A fresh system user (unique name, own group, no home), removed afterwards."""
    need_root()
    name = f"awt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, stderr=subprocess.DEVNULL)
