"""`env_file`: secrets for a group's workers, in a file only root (and the group) may read.

Read as root in each new worker before it drops privileges (and in the import check at
`start`), so the file can be mode 0600 root:root, the worker's user never reads it, and the
master never keeps the secrets in its own memory. Lines are ``KEY=VALUE``; blank lines and
``#`` comments are skipped; ``export KEY=VALUE`` and quoted values (``"..."``, ``'...'``) are
accepted, as most .env files write them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

__all__ = ["read_env_file"]

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def read_env_file(path: Path) -> dict[str, str]:
    """The variables in `path`; ValueError names the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as stream:
            info = os.fstat(stream.fileno())
            text = stream.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o007:
        raise ValueError(f"{path} is open to other users (mode {mode:o}): chmod 600 it")
    if mode & 0o020 or info.st_uid not in (0, os.geteuid()):
        raise ValueError(
            f"{path} can be changed by another user (mode {mode:o}, uid {info.st_uid})"
        )
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        value = match[2].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[match[1]] = value
    return values
