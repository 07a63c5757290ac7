"""Who owns a run: ``host:pid:start-time``, so a dead owner on this machine is detected at once.

The process start time (from /proc on Linux) guards against pid reuse: a new process that got the same pid has
another start time, so the old owner is still seen as dead.
"""

from __future__ import annotations

import os
import socket
from functools import cache

__all__ = ["is_dead_local_owner", "this_owner"]


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # Field 22 (starttime) after the parenthesised command name, which may itself contain spaces.
        return data[data.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return "0"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split()[0].decode()
    except (OSError, ValueError, IndexError):
        return "?"


@cache
def _host() -> str:
    return socket.gethostname()


_OWNER: tuple[int, str] = (-1, "")


def this_owner() -> str:
    """This process's owner id (cached per pid: a forked child gets its own)."""
    global _OWNER
    pid = os.getpid()
    if _OWNER[0] != pid:
        _OWNER = (pid, f"{_host()}:{pid}:{_start_time(pid)}")
    return _OWNER[1]


def is_dead_local_owner(owner: str | None) -> bool:
    """True if ``owner`` is a process on this machine that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    if _state(pid) in ("Z", "X"):
        return True  # killed, not yet reaped by its parent
    return started not in ("0", "") and _start_time(pid) not in (started, "0")
