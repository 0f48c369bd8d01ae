"""Where the master may create its files as root: not where another user could plant a link.

A pid file, log file or control socket in a directory every user can write (``/tmp``) lets
another user create the name first, as a symbolic link to a file of their choosing, which root
would then write or append to. `unsafe_location` refuses such a place unless the directory is
sticky (others cannot remove or rename what is ours) and the name is free or ours already;
the files themselves are then created without following links (``O_NOFOLLOW``, ``mkstemp``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["unsafe_location"]

ADVICE = "use a directory only this user can write, such as /run/aioworker"


def unsafe_location(path: Path) -> str:
    """Why creating `path` is unsafe, or "" when it is safe."""
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the master creates the missing ones in the nearest
    try:
        info = os.stat(directory)
    except OSError:
        return ""  # reported when the file is opened, with the system's reason
    me = os.geteuid()
    if info.st_uid not in (0, me):
        return f"{directory} belongs to another user (uid {info.st_uid}); {ADVICE}"
    if not info.st_mode & stat.S_IWOTH:
        return ""
    mode = f"mode {stat.S_IMODE(info.st_mode):o}"
    if not info.st_mode & stat.S_ISVTX:
        return f"{directory} is writable by every user ({mode}, not sticky); {ADVICE}"
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror}"
    if stat.S_ISLNK(found.st_mode):
        return f"{path} is a symbolic link in a directory every user can write; {ADVICE}"
    if found.st_uid != me:
        return (
            f"{path} belongs to another user (uid {found.st_uid}) in a directory every user "
            f"can write; {ADVICE}"
        )
    return ""
