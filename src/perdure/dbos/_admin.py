"""``DBOSAdmin``: the run-admin port over a DBOS system database — get, list, stuck, pending, decide, cancel, prune.

Two ways to get one: ``DBOSAgent``'s (through the launched ``DBOS``), or ``perdure.dbos.admin(url)`` from any
process, with no agent and no launched DBOS (through a ``DBOSClient``; what the CLI uses). The URL is checked
before anything connects, and nothing is created or migrated: a typo in a SQLite path or a database that is not a
DBOS system database is one clear error, and the file or database is left as it was.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._exceptions import UserError
from .._ops import Decision
from ..runs import PendingDecision, RunInfo
from ._inspect import ACTIVE, build_run_info, pending_of
from ._names import STATUS_EVENT, WORKFLOW_PREFIX, workflow_name

__all__ = ["ACTIVE_STATUSES", "DBOSAdmin", "admin", "database_errors", "decision_topic"]

ENGINE = "dbos"
ACTIVE_STATUSES = ACTIVE

PERDURE_TO_DBOS = {
    "pending": ["ENQUEUED", "DELAYED"],
    "running": ["PENDING"],
    "waiting": ["PENDING", "ENQUEUED"],  # ENQUEUED: being recovered after a restart
    "completed": ["SUCCESS"],
    "failed": ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
    "cancelled": ["CANCELLED"],
}
_FINISHED = ["SUCCESS", "ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "CANCELLED"]
_PAGE = 100


# --- errors of the system database, as one line -----------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


@contextmanager
def database_errors(where: str) -> Iterator[None]:
    """SQLAlchemy's errors (a page of SQL and traceback) become one ``UserError`` naming what failed and where."""
    import sqlalchemy.exc

    try:
        yield
    except sqlalchemy.exc.ProgrammingError as e:
        raise UserError(
            f"{where} is not a DBOS system database, or not one of this DBOS version ({_first_line(e)}). "
            "Nothing was changed. Pass the system_database_url your DBOS application uses; an application "
            "launched with a newer DBOS migrates it"
        ) from None
    except sqlalchemy.exc.DBAPIError as e:
        raise UserError(
            f"cannot use {where}: {_first_line(e)}. Nothing was changed. Check that the database server is "
            "running and that the URL is the system_database_url of your DBOS application"
        ) from None


def _where(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return f"the DBOS system database {make_url(url).render_as_string(hide_password=True)!r}"
    except Exception:
        return "the DBOS system database"


def check_url(url: str, schema: str = "dbos") -> None:
    """Raise ``UserError`` unless ``url`` names an existing DBOS system database. Creates and changes nothing.

    SQLite is checked here, read-only (connecting with SQLAlchemy would create a missing file). PostgreSQL is
    checked by the first query of the client (``_probe``): a missing database, an unreachable server, or a
    database without DBOS's tables each give one message.
    """
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise UserError(
            f"{url!r} is not a database URL. Pass the system_database_url of your DBOS application: "
            "postgresql://user:password@host:5432/name, or sqlite:///relative/path.sqlite "
            "(sqlite:////absolute/path.sqlite)"
        ) from None
    if not parsed.drivername.startswith("sqlite"):
        if not parsed.drivername.startswith("postgres"):
            raise UserError(
                f"{url!r}: DBOS keeps its system database in PostgreSQL or SQLite, not {parsed.drivername!r}"
            )
        return
    path = parsed.database or ""
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        raise UserError(f"{url!r} is an in-memory SQLite database: it holds no runs. Pass the file's URL")
    if not os.path.exists(path):
        raise UserError(
            f"no DBOS system database at {url!r}: the file {os.path.abspath(path)} does not exist (nothing was "
            "created). Pass the system_database_url of your DBOS application: sqlite:///relative/path.sqlite "
            "is relative to the current directory, sqlite:////absolute/path.sqlite is absolute"
        )
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise UserError(
            f"{os.path.abspath(path)} is not a SQLite database ({e}); it is not a DBOS system database. Nothing "
            "was changed. Pass the system_database_url of your DBOS application"
        ) from None
    if "workflow_status" not in tables:
        hint = ""
        if "perdure_runs" in tables:
            hint = " It is a perdure journal (the embedded engine's): pass it with --journal instead."
        elif not tables:
            hint = " It is empty."
        raise UserError(
            f"{os.path.abspath(path)} is not a DBOS system database (it has no workflow_status table).{hint} "
            "Nothing was changed. Pass the system_database_url of your DBOS application"
        )


# --- the port ---------------------------------------------------------------------------------------------------


class DBOSAdmin:
    """Runs of one DBOS system database, for any agent (or only ``workflow``'s, for an agent's own admin).

    ``api`` is the launched ``DBOS`` class or a ``DBOSClient``: both offer the same async calls.
    """

    engine = ENGINE

    def __init__(self, api: Any, *, where: str, workflow: str | None = None, client: Any = None) -> None:
        self.api = api
        self.where = where
        self.workflow = workflow
        self._client = client

    def __repr__(self) -> str:
        return f"DBOSAdmin({self.where})"

    def close(self) -> None:
        """Release the connections of a client made by ``admin(url)`` (the launched DBOS's stay)."""
        client, self._client = self._client, None
        if client is not None:
            client.destroy()

    def __enter__(self) -> DBOSAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _status(self, run_id: str) -> Any:
        found = await self.api.list_workflows_async(workflow_ids=[run_id])
        if not found or not str(found[0].name).startswith(WORKFLOW_PREFIX):
            return None
        if self.workflow is not None and found[0].name != self.workflow:
            return None
        return found[0]

    async def _event(self, status: Any) -> Any:
        if status.status not in ACTIVE:
            return None
        return await self.api.get_event_async(status.workflow_id, STATUS_EVENT, timeout_seconds=0)

    async def _require(self, run_id: str) -> Any:
        status = await self._status(run_id)
        if status is None:
            raise UserError(f"no perdure run {run_id!r} in {self.where}")
        return status

    async def get_run(self, run_id: str) -> RunInfo | None:
        with database_errors(self.where):
            status = await self._status(run_id)
            if status is None:
                return None
            steps = await self.api.list_workflow_steps_async(run_id)
            return build_run_info(status, steps, await self._event(status))

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        wanted = list(status or [])
        unknown = [s for s in wanted if s not in PERDURE_TO_DBOS]
        if unknown:
            raise UserError(f"unknown run status {unknown[0]!r}; one of: {', '.join(PERDURE_TO_DBOS)}")
        dbos_statuses = sorted({d for s in wanted for d in PERDURE_TO_DBOS[s]}) or None
        name = workflow_name(agent) if agent else self.workflow
        out: list[RunInfo] = []
        offset = 0
        with database_errors(self.where):
            while limit is None or len(out) < limit:
                page = await self.api.list_workflows_async(
                    name=name, status=dbos_statuses, sort_desc=True, limit=_PAGE, offset=offset
                )
                for wf in page:
                    if not str(wf.name).startswith(WORKFLOW_PREFIX):
                        continue  # the application's own workflows
                    info = build_run_info(wf, None, await self._event(wf))
                    if not wanted or info.status in wanted:
                        out.append(info)
                if len(page) < _PAGE:
                    break
                offset += _PAGE
        return out if limit is None else out[:limit]

    async def stuck(self, older_than: float) -> list[RunInfo]:
        """Running runs in which no step started or finished for ``older_than`` seconds (DBOS keeps no lease)."""
        cutoff = time.time() - older_than
        out = []
        for info in await self.list_runs(status=["running"], limit=None):
            full = await self.get_run(info.run_id)
            if full is None or full.status != "running":
                continue
            marks = [m for s in full.steps for m in (s.started_at, s.finished_at) if m is not None]
            if max(marks, default=full.updated_at or full.created_at) < cutoff:
                out.append(full)
        return out

    async def pending(self, run_id: str) -> list[PendingDecision]:
        info = await self.get_run(run_id)
        if info is None:
            raise UserError(f"no perdure run {run_id!r} in {self.where}")
        return info.pending

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None:
        """Send the decision to the run's workflow; it takes it wherever it executes (no process is needed here)."""
        with database_errors(self.where):
            status = await self._require(run_id)
            key = decision_topic(run_id, status.status, await self._event(status), tool_call_id)
            message = Decision(approved=approved, note=note).model_dump(mode="json")
            await self.api.send_async(run_id, message, key, idempotency_key=f"{run_id}/{key}")

    async def cancel(self, run_id: str) -> None:
        """The run stops at its next step boundary (status ``cancelled``); a finished run is unchanged."""
        with database_errors(self.where):
            await self._require(run_id)
            await self.api.cancel_workflow_async(run_id)

    async def prune(self, older_than: float) -> int:
        """Delete finished perdure runs (with their steps, messages and events) that finished more than
        ``older_than`` seconds ago. Runs in flight or waiting are never deleted."""
        cutoff_ms = (time.time() - older_than) * 1000
        ids: list[str] = []
        offset = 0
        with database_errors(self.where):
            while True:
                page = await self.api.list_workflows_async(
                    name=self.workflow,
                    status=_FINISHED,
                    limit=_PAGE,
                    offset=offset,
                    load_input=False,
                    load_output=False,
                )
                for wf in page:
                    finished = wf.completed_at if wf.completed_at is not None else wf.updated_at
                    if str(wf.name).startswith(WORKFLOW_PREFIX) and finished is not None and finished < cutoff_ms:
                        ids.append(str(wf.workflow_id))
                if len(page) < _PAGE:
                    break
                offset += _PAGE
            if ids:
                await self.api.delete_workflows_async(ids)
        return len(ids)


def decision_topic(run_id: str, dbos_status: str, event: Any, tool_call_id: str) -> str:
    """The topic a decision on ``tool_call_id`` is sent to: the waiting step's key. UserError if none waits."""
    pending = pending_of(event) if dbos_status in ACTIVE else []
    for p in pending:
        if p.get("tool_call_id") == tool_call_id:
            return str(p["key"])
    waiting = ", ".join(f"{p.get('tool_name')} ({p.get('tool_call_id')})" for p in pending) or "none"
    raise UserError(
        f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision (DBOS status {dbos_status}); "
        f"waiting: {waiting}"
    )


def admin(url: str, *, schema: str = "dbos") -> DBOSAdmin:
    """The runs of the DBOS system database at ``url``, from any process: no agent, no launched DBOS.

    ``url`` is the ``system_database_url`` the application gives DBOS (``postgresql://...`` or
    ``sqlite:///...``); ``schema`` its ``dbos_system_schema``. Raises ``UserError`` (and creates nothing) if it
    is not an existing DBOS system database. Call ``close()`` when done, or use it as a context manager.
    """
    from dbos import DBOSClient

    check_url(url, schema)
    where = _where(url)
    with database_errors(where):
        client = DBOSClient(
            system_database_url=url, dbos_system_schema=schema, lazy=True, retry_connection_errors=False
        )
        try:
            # The first query checks the server, the database and DBOS's tables, each with its own message.
            client.list_workflows(limit=1, load_input=False, load_output=False)
        except BaseException:
            client.destroy()
            raise
    return DBOSAdmin(client, where=where, client=client)
