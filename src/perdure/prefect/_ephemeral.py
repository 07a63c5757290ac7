"""Prefect without a server of its own: no ``PREFECT_API_URL``, so Prefect starts a temporary server per process.

That server is a child process on Prefect's SQLite database (``PREFECT_HOME/prefect.db`` by default). Killed with
SIGKILL, a process leaves its temporary server running, still on that database; the next process starts a
temporary server of its own on the same file, and its requests stall on "database is locked" (Prefect's client
retries them for minutes). Crash recovery, the reason to use perdure, needs a real server.

So, in that mode: a warning when a process first uses Prefect, and a clear error, before Prefect starts its own
server, when a temporary server left by a dead process holds the same database. The temporary server a perdure
process starts inherits ``PERDURE_PREFECT_TEMPORARY_SERVER_OF`` (its parent's owner id and the database), so a
leftover is told apart from another live process's server exactly; a temporary server that perdure did not start
counts as left behind when its parent is gone (it was re-parented to init).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import UserError
from ..durable.owner import is_dead_local_owner, this_owner

__all__ = ["Leftover", "TemporaryServerWarning", "check_server", "leftovers"]

MARKER = "PERDURE_PREFECT_TEMPORARY_SERVER_OF"
_APP = "prefect.server.api.server:create_app"

_checked = False


class TemporaryServerWarning(UserWarning):
    """No ``PREFECT_API_URL``: runs live in a temporary Prefect server that does not survive a crash."""


@dataclass(frozen=True)
class Leftover:
    pid: int
    port: str
    database: str


def check_server() -> None:
    """Before this process first talks to Prefect: warn without a server of its own; refuse to start a temporary
    server on a database that a killed process's temporary server still holds."""
    global _checked
    from prefect.settings import PREFECT_API_URL, get_current_settings

    if _checked or PREFECT_API_URL.value():
        return
    secret = get_current_settings().server.database.connection_url
    database = secret.get_secret_value() if secret is not None else ""
    found = leftovers(database)
    if found:
        left = found[0]
        raise UserError(
            f"a temporary Prefect server left running by a process that was killed (pid {left.pid}, port {left.port}) "
            f"still holds Prefect's database {left.database}: the temporary server this process would start on the "
            f"same database stalls on 'database is locked'. Stop it (kill {left.pid}), or use it as this process's "
            f"server (PREFECT_API_URL=http://127.0.0.1:{left.port}/api). Runs survive a crash only with a Prefect "
            "server of their own: `prefect server start`, and PREFECT_API_URL set for every process."
        )
    _checked = True
    os.environ[MARKER] = f"{this_owner()} {database}"  # inherited by the temporary server Prefect starts next
    warnings.warn(
        "PREFECT_API_URL is not set: Prefect starts a temporary server for this process, and a run does not "
        "survive a crash of it (killed, its temporary server keeps holding Prefect's database and the next process "
        "stalls on 'database is locked'). For durable runs, start a Prefect server (`prefect server start`) and set "
        "PREFECT_API_URL in every process.",
        TemporaryServerWarning,
        stacklevel=3,
    )


def leftovers(database: str) -> list[Leftover]:
    """Temporary Prefect servers on ``database`` whose parent process is gone (Linux: read from /proc)."""
    found: list[Leftover] = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found  # not Linux: nothing to look at
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if _APP.encode() not in args:
                continue
            env = dict(
                item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
            )
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except (OSError, ValueError):
            continue  # gone meanwhile, or another user's
        if env.get(b"PREFECT__SERVER_EPHEMERAL") != b"1":
            continue
        marker = env.get(MARKER.encode(), b"").decode()
        if marker:
            owner, _, used = marker.partition(" ")
            if used != database or not is_dead_local_owner(owner):
                continue
        else:
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            if ppid != 1 or _database_of(env) != database:
                continue
        port = args[args.index(b"--port") + 1].decode() if b"--port" in args else "?"
        found.append(Leftover(pid, port, database))
    return found


def _database_of(env: dict[bytes, bytes]) -> str:
    """The database a Prefect process with this environment uses (its setting, or the default under its home)."""
    for name in (b"PREFECT_SERVER_DATABASE_CONNECTION_URL", b"PREFECT_API_DATABASE_CONNECTION_URL"):
        if name in env:
            return env[name].decode()
    home = env.get(b"PREFECT_HOME", b"").decode() or os.path.join(env.get(b"HOME", b"~").decode(), ".prefect")
    return f"sqlite+aiosqlite:///{Path(home).expanduser()}/prefect.db"
