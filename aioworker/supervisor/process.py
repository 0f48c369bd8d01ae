"""Process facts both the master and its workers rely on: exit codes, ids, privileges, titles.

The master reads a worker's exit status with `describe_exit`; the worker exits with
`BOOT_ERROR` when it cannot start; `check` and the worker resolve users and groups the same
way. Keeping these here lets the master's modules and the worker's share them without
importing each other.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal

__all__ = ["BOOT_ERROR", "describe_exit", "drop_privileges", "resolve_ids", "set_title"]

log = logging.getLogger("aioworker.worker")

# Exit status of a worker that could not start (import error, lifespan failure, bad user).
BOOT_ERROR = 3


def describe_exit(status: int, killed_by_master: bool = False) -> str:
    """How a process died, in words, from a waitpid status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGKILL and not killed_by_master:
            return "killed by SIGKILL, perhaps out of memory"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == BOOT_ERROR:
            return f"exited with code {code} (could not start)"
        return f"exited with code {code}"
    return f"ended with status {status}"


def resolve_ids(user: str, group: str) -> tuple[int, int, str] | None:
    """(uid, gid, user name) to switch to, or None to stay as is; KeyError names what is unknown."""
    if not user and not group:
        return None
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise KeyError(f"no such user {user!r}") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    else:
        uid, gid, name = os.getuid(), os.getgid(), ""
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise KeyError(f"no such group {group!r}") from None
    return uid, gid, name


def drop_privileges(uid: int, gid: int, name: str) -> None:
    """Switch to uid/gid with the user's supplementary groups (root only; else a no-op)."""
    if os.getuid() != 0:
        if (uid, gid) != (os.getuid(), os.getgid()):
            log.warning("not running as root: user/group settings ignored")
        return
    if name:
        os.initgroups(name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if name:
        entry = pwd.getpwuid(uid)
        os.environ.update(USER=name, LOGNAME=name, HOME=entry.pw_dir)


def set_title(title: str) -> None:
    """Name this process in ps/top when setproctitle is installed (the `title` extra)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)
