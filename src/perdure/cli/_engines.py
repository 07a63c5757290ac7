"""Which engine's runs a command operates: one ``RunAdmin``, chosen from the flags.

``--journal PATH`` (the default: ``$PERDURE_JOURNAL`` or ``perdure.db``), ``--dbos URL``, ``--temporal ADDRESS``
(with ``--namespace``) or ``--prefect URL``. Everything the commands do afterwards goes through the port.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import MissingExtra, UserError
from ..durable.ports import RunAdmin

__all__ = ["DAMAGED_HINT", "Where", "check_journal", "journal_error", "open_admin", "translate_errors"]


@dataclass(frozen=True)
class Where:
    """The chosen engine: its admin, how to name it in messages, and what happens to a run once it is decided."""

    admin: RunAdmin
    label: str
    after_decide: str
    local_path: str | None = None


def check_journal(path: str) -> None:
    """Refuse, before SQLite sees it, a journal file that a read would otherwise create or turn into a journal."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no journal at {path}; pass --journal PATH or set PERDURE_JOURNAL (nothing was created)")
    if p.is_file() and p.stat().st_size == 0:
        raise UserError(
            f"{path} is an empty file (0 bytes), not a perdure journal; perdure left it untouched. Pass --journal "
            "the file your DurableAgent writes (DurableAgent(journal=...) or $PERDURE_JOURNAL)"
        )


DAMAGED_HINT = 'sqlite3 {path} ".recover" | sqlite3 recovered.db'


def journal_error(path: str, error: BaseException) -> UserError | None:
    """The message for an SQLite error from the journal file (None: not one)."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(error, sqlite3.DatabaseError):
        return None
    if isinstance(error, sqlite3.OperationalError):  # locked, read-only, out of disk: the file is fine
        return UserError(f"cannot use the journal {path}: {error}; perdure changed nothing in it")
    return UserError(
        f"the journal {path} is damaged ({error}); perdure changed nothing. Copy what is still readable into a "
        f"new file with `{DAMAGED_HINT.format(path=path)}` and pass --journal recovered.db (or restore a backup)"
    )


@contextmanager
def translate_errors(where: Where | None) -> Iterator[None]:
    """SQLite errors from a journal become one clear message instead of a traceback."""
    try:
        yield
    except Exception as e:
        message = journal_error(where.local_path, e) if where is not None and where.local_path else None
        if message is not None:
            raise message from e
        raise


def _engine_module(name: str) -> Any:
    try:
        return importlib.import_module(f"perdure.{name}")
    except MissingExtra:
        raise
    except ImportError as e:
        raise MissingExtra(name, getattr(e, "name", None) or name) from e


def open_admin(args: Any) -> Where:
    """The engine the flags name (one at most), ready to use."""
    chosen = [
        flag
        for flag, value in (
            ("--journal", getattr(args, "journal_given", False)),
            ("--dbos", getattr(args, "dbos", None)),
            ("--temporal", getattr(args, "temporal", None)),
            ("--prefect", getattr(args, "prefect", None)),
        )
        if value
    ]
    if len(chosen) > 1:
        raise UserError(f"give one of {', '.join(chosen)}, not several")
    if getattr(args, "dbos", None):
        return _dbos(args.dbos)
    if getattr(args, "temporal", None):
        return _temporal(args.temporal, args.namespace)
    if getattr(args, "prefect", None):
        return _prefect(args.prefect)
    return _local(args.journal)


def _local(path: str) -> Where:
    from ..local._admin import LocalAdmin
    from ..local._journal import Journal

    check_journal(path)
    try:
        journal = Journal(path)
    except Exception as e:
        message = journal_error(path, e)
        if message is not None:
            raise message from e
        raise
    return Where(
        LocalAdmin(journal),
        path,
        "a worker or `perdure runs resume` continues the run",
        local_path=path,
    )


def _dbos(url: str) -> Where:
    if url.startswith("sqlite:///"):
        # DBOS would create a missing SQLite file (and its schema) just to find nothing in it.
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if not Path(path).is_file() or Path(path).stat().st_size == 0:
            raise UserError(
                f"no DBOS system database at {path} (from --dbos {url}); nothing was created. Pass the "
                "system_database_url your DBOS application uses"
            )
    admin: RunAdmin = _engine_module("dbos").admin(url)
    return Where(admin, f"DBOS {url}", "the run continues in a process with DBOS launched")


def _temporal(address: str, namespace: str) -> Where:
    # A command line waits a little for a worker to answer a run's query (then shows what the server alone knows),
    # and for a worker to apply a decision.
    admin: RunAdmin = _engine_module("temporal").admin(
        address, namespace, query_deadlines=(1.0, 3.0), decide_timeout=30.0
    )
    return Where(admin, f"Temporal {address} (namespace {namespace})", "the run's workflow continues on its workers")


def _prefect(url: str) -> Where:
    # Prefect reads its settings when it is imported: point it at the server first, and keep its logs quiet.
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    admin: RunAdmin = _engine_module("prefect").admin(url)
    return Where(admin, f"Prefect {url}", "the run continues in the process that serves its agent")
