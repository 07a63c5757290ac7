"""The SQLite journal: schema and migrations, run rows, step rows, group commit.

Durability modes (``DurableAgent(..., durability=...)``), both in WAL mode:

* ``"full"`` (default) — ``synchronous=FULL``: every committed step is on disk before the run moves on. A
  process crash, a kill -9, a pod restart *or a power loss* loses no recorded step. One fsync per commit;
  concurrent runs in one process share commits (group commit), so the fsync is paid once per batch.
* ``"normal"`` — ``synchronous=NORMAL``: a process crash loses nothing (the WAL is in the OS's hands), but a
  power loss or OS crash may lose the last commits: those steps run again on resume (at-least-once), and an
  at-most-once tool whose start mark was lost may run twice. Several times faster per step.

Table and column names are persisted compatibility data: pinned by a test, never renamed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._exceptions import UserError

__all__ = ["SCHEMA_VERSION", "Claim", "Durability", "Journal", "RunRow", "Statement", "StepRow"]

from ._names import APPLICATION_ID

SCHEMA_VERSION = 2
Durability = Literal["full", "normal"]

# Versioned migrations: MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[Sequence[str]] = [
    (
        """CREATE TABLE perdure_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status TEXT NOT NULL,
            input TEXT NOT NULL,
            output TEXT,
            error TEXT,
            usage TEXT,
            owner TEXT,
            lease_expires REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            trace_context TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL
        )""",
        "CREATE INDEX perdure_runs_status ON perdure_runs (status, agent)",
        "CREATE INDEX perdure_runs_finished ON perdure_runs (finished_at) WHERE finished_at IS NOT NULL",
        """CREATE TABLE perdure_steps (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            describe TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT,
            payload TEXT,
            attempt INTEGER NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, key)
        ) WITHOUT ROWID""",
    ),
    # 2: listing runs newest first (``list_runs``, ``perdure runs list``) reads an index instead of sorting every run:
    # at a million runs, the 50 newest cost a few index pages instead of a scan.
    (
        "DROP INDEX perdure_runs_status",
        "CREATE INDEX perdure_runs_status ON perdure_runs (status, agent, created_at)",
        "CREATE INDEX perdure_runs_created ON perdure_runs (created_at)",
        "CREATE INDEX perdure_runs_agent_created ON perdure_runs (agent, created_at)",
    ),
]

RUN_STATUSES = ("pending", "running", "waiting", "completed", "failed", "cancelled")
FINAL_STATUSES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunRow:
    run_id: str
    agent: str
    fingerprint: str
    status: str
    input: str
    output: str | None
    error: str | None
    usage: str | None
    owner: str | None
    lease_expires: float | None
    cancel_requested: int
    attempts: int
    trace_context: str | None
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True)
class StepRow:
    run_id: str
    key: str
    seq: int
    kind: str
    describe: str
    status: str  # started | done | waiting
    result: str | None
    payload: str | None
    attempt: int
    started_at: float
    finished_at: float | None
    input_tokens: int
    output_tokens: int


_RUN_COLS = ", ".join(RunRow.__dataclass_fields__)
_STEP_COLS = ", ".join(StepRow.__dataclass_fields__)


def _damaged(path: Path, error: sqlite3.DatabaseError) -> UserError:
    return UserError(
        f"the journal {path} is damaged ({error}); perdure changed nothing in it. Stop every process using it, "
        f'copy it aside, and rebuild what SQLite can read: sqlite3 {path} ".recover" | sqlite3 recovered.db — '
        "then point DurableAgent(journal=...) or PERDURE_JOURNAL at recovered.db"
    )


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    text = str(error).lower()
    return not isinstance(error, sqlite3.IntegrityError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def _refuse(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a usable perdure journal: {why}. perdure left it untouched; "
        "point DurableAgent(journal=...) or PERDURE_JOURNAL at another file"
    )


class Journal:
    """One SQLite journal file. Thread-safe; writes from an event loop are group-committed."""

    def __init__(self, path: str | os.PathLike[str], *, durability: Durability = "full") -> None:
        if durability not in ("full", "normal"):
            raise UserError(f"durability must be 'full' or 'normal', not {durability!r}")
        self.path = Path(path)
        self.durability: Durability = durability
        self._lock = threading.RLock()
        self._pending: list[tuple[list[tuple[str, Sequence[Any]]], asyncio.Future[list[int]]]] = []
        self._flush_scheduled = False
        self.commits = 0
        self._conn = self._open()
        # A journal nobody holds any more closes its connection (Python >= 3.13 warns about one left open).
        weakref.finalize(self, self._conn.close)

    # --- opening, checking, migrating ----------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise _refuse(path, "it is a directory (the journal is a file in it, e.g. perdure.db)")
        existed = path.exists() and path.stat().st_size > 0
        # perdure never opens an existing journal with anything but SQLite: closing any descriptor of the file drops
        # every lock this process's SQLite connections hold on it (POSIX locks belong to the process), and another
        # process may then delete the WAL from under those connections. SQLite reads the header for us.
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                # Owner-only from the first byte: create the file ourselves before SQLite opens it.
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
                except FileExistsError:
                    pass  # another process created it a moment ago
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except (OSError, sqlite3.Error) as e:
            raise UserError(
                f"cannot open the journal {path}: {getattr(e, 'strerror', None) or e}; point "
                "DurableAgent(journal=...) or PERDURE_JOURNAL at a file this process can read and write"
            ) from e
        try:
            if existed:
                try:
                    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                except sqlite3.DatabaseError as e:
                    raise _refuse(path, f"it is not an SQLite database ({e})") from e
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if app_id != APPLICATION_ID and (app_id != 0 or tables):
                    raise _refuse(path, "it is an SQLite database of another application")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise _refuse(
                        path,
                        f"it was written by a newer perdure (schema version {version}; this perdure knows up to "
                        f"{SCHEMA_VERSION}); upgrade perdure to open it",
                    )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        # Owner-only is how a journal is born; an existing file keeps the mode its owner gave it (a journal
        # shared by a group of workers on purpose must not be locked down by the next process that opens it).
        for suffix in ("", "-wal", "-shm") if not existed else ():
            p = Path(f"{path}{suffix}")
            if p.exists():
                try:
                    os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
                except OSError:
                    pass
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version, SCHEMA_VERSION):
                for sql in MIGRATIONS[target]:
                    conn.execute(sql)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writes ----------------------------------------------------------------------------------------

    def write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run statements in one transaction, now (blocking)."""
        with self._lock:
            self._transaction(list(statements))

    def _transaction(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        counts: list[int] = []
        try:
            for sql, params in statements:
                counts.append(conn.execute(sql, params).rowcount)
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.DatabaseError) and _is_damage(e):
                raise _damaged(self.path, e) from e
            raise
        self.commits += 1
        return counts

    def write_counts(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int]:
        """Like ``write``; returns each statement's row count (for compare-and-swap updates)."""
        with self._lock:
            return self._transaction(list(statements))

    def queue(self, statements: list[tuple[str, Sequence[Any]]]) -> asyncio.Future[list[int]]:
        """Queue statements for the next group commit; the future resolves once they are durable, to each
        statement's row count (a fenced write that changed nothing counts 0).

        Every write queued during one turn of the event loop is committed together at the start of the next:
        with 100 runs in flight, one fsync covers all their steps instead of one each.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._pending.append((statements, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    async def write_async(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]:
        """Record statements durably, sharing the commit with concurrent writers (see ``queue``)."""
        return await self.queue(statements)

    def flush_now(self) -> None:
        """Commit queued writes at once instead of at the next loop turn (when nobody else is writing)."""
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._lock:
                counts = self._transaction([s for statements, _ in batch for s in statements])
        except Exception:
            # One bad statement must not fail its neighbours: retry each write on its own.
            for statements, future in batch:
                try:
                    with self._lock:
                        own = self._transaction(statements)
                except Exception as e:
                    if not future.done():
                        future.set_exception(e)
                else:
                    if not future.done():
                        future.set_result(own)
            return
        at = 0
        for statements, future in batch:
            if not future.done():
                future.set_result(counts[at : at + len(statements)])
            at += len(statements)

    # --- reads -----------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                if _is_damage(e):
                    raise _damaged(self.path, e) from e
                raise

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self.query(f"SELECT {_RUN_COLS} FROM perdure_runs WHERE run_id = ?", (run_id,))
        return RunRow(*rows[0]) if rows else None

    def steps(self, run_id: str) -> list[StepRow]:
        rows = self.query(f"SELECT {_STEP_COLS} FROM perdure_steps WHERE run_id = ? ORDER BY seq", (run_id,))
        return [StepRow(*r) for r in rows]

    def cancel_requested_among(self, run_ids: Sequence[str]) -> list[str]:
        marks = ",".join("?" * len(run_ids))
        sql = f"SELECT run_id FROM perdure_runs WHERE cancel_requested = 1 AND run_id IN ({marks})"
        return [r[0] for r in self.query(sql, list(run_ids))]

    def finished_before(self, cutoff: float) -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT run_id FROM perdure_runs WHERE finished_at IS NOT NULL AND finished_at < ? "
                "AND status IN ('completed', 'failed', 'cancelled')",
                (cutoff,),
            )
        ]

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete finished runs and their steps (runs in flight are never deleted)."""
        for start in range(0, len(run_ids), 500):
            chunk = list(run_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            self.write(
                [
                    (f"DELETE FROM perdure_steps WHERE run_id IN ({marks})", chunk),
                    (f"DELETE FROM perdure_runs WHERE run_id IN ({marks}) AND finished_at IS NOT NULL", chunk),
                ]
            )

    def runs_with_last_progress(self, agent: str | None) -> list[tuple[RunRow, float | None]]:
        """Running and pending runs, each with the time its last step started or finished."""
        where = "r.status IN ('running', 'pending')"
        params: list[object] = []
        if agent is not None:
            where += " AND r.agent = ?"
            params.append(agent)
        columns = ", ".join(f"r.{name}" for name in RunRow.__dataclass_fields__)
        rows = self.query(
            f"SELECT {columns}, (SELECT MAX(MAX(s.started_at, COALESCE(s.finished_at, s.started_at))) "
            f"FROM perdure_steps s WHERE s.run_id = r.run_id) FROM perdure_runs r WHERE {where}",
            params,
        )
        return [(RunRow(*values[:-1]), values[-1]) for values in rows]

    def pragma(self, name: str) -> Any:
        return self.query(f"PRAGMA {name}")[0][0]

    def list_runs(
        self,
        *,
        agent: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int | None = 100,
        where: str | None = None,
        params: Sequence[Any] = (),
    ) -> list[RunRow]:
        clauses: list[str] = []
        args: list[Any] = []
        if agent is not None:
            clauses.append("agent = ?")
            args.append(agent)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if where:
            clauses.append(where)
            args.extend(params)
        # With a status filter, the status index: SQLite would otherwise walk an agent's runs newest first through
        # the (agent, created_at) index to find its few running ones among a million finished.
        index = " INDEXED BY perdure_runs_status" if statuses else ""
        sql = f"SELECT {_RUN_COLS} FROM perdure_runs{index}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [RunRow(*r) for r in self.query(sql, args)]


# --- every statement the embedded engine runs, by name ------------------------------------------------------------
#
# A write of an executing attempt is *fenced*: it changes something only while the writer still holds its claim of
# the run (same owner, same attempt number: every claim increments ``attempts``), checked inside the transaction
# that makes the write. A stale owner — a process that stalled past its lease while another took the run over —
# writes nothing; the row counts the group commit hands back tell it so.

Statement = tuple[str, Sequence[Any]]


@dataclass(frozen=True)
class Claim:
    """Who executes an attempt of a run: the fencing token its writes carry."""

    run_id: str
    owner: str
    attempt: int


_FENCE = "EXISTS (SELECT 1 FROM perdure_runs WHERE run_id = ? AND owner = ? AND attempts = ? AND status = 'running')"


def _fence(claim: Claim) -> tuple[str, str, int]:
    return (claim.run_id, claim.owner, claim.attempt)


def insert_run(
    run_id: str,
    agent: str,
    fingerprint: str,
    status: str,
    input_json: str,
    owner: str | None,
    lease_expires: float | None,
    trace_context: str | None,
    at: float,
) -> Statement:
    return (
        "INSERT INTO perdure_runs (run_id, agent, fingerprint, status, input, owner, lease_expires, attempts, "
        "trace_context, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            run_id,
            agent,
            fingerprint,
            status,
            input_json,
            owner,
            lease_expires,
            1 if status == "running" else 0,
            trace_context,
            at,
            at,
        ),
    )


def insert_step(
    claim: Claim,
    key: str,
    seq: int,
    kind: str,
    describe: str,
    status: str,
    *,
    result: str | None = None,
    payload: str | None = None,
    started_at: float,
    finished_at: float | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    replace: bool = False,
) -> Statement:
    """A step row, written only while ``claim`` holds (0 rows otherwise); ``replace``: over a failed attempt's."""
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    return (
        f"{verb} INTO perdure_steps (run_id, key, seq, kind, describe, status, result, payload, attempt, started_at, "
        f"finished_at, input_tokens, output_tokens) SELECT ?,?,?,?,?,?,?,?,?,?,?,?,? WHERE {_FENCE}",
        (
            claim.run_id,
            key,
            seq,
            kind,
            describe,
            status,
            result,
            payload,
            claim.attempt,
            started_at,
            finished_at,
            input_tokens,
            output_tokens,
            *_fence(claim),
        ),
    )


def settle_step(claim: Claim, key: str, result: str, at: float) -> Statement:
    """An at-most-once call's "started" mark becomes its result (e.g. the unknown outcome), fenced."""
    return (
        "UPDATE perdure_steps SET status = 'done', result = ?, finished_at = ?, attempt = ? "
        f"WHERE run_id = ? AND key = ? AND status = 'started' AND {_FENCE}",
        (result, at, claim.attempt, claim.run_id, key, *_fence(claim)),
    )


def finish_run(
    claim: Claim,
    status: str,
    *,
    output: str | None = None,
    error: str | None = None,
    usage: str | None = None,
    at: float,
) -> Statement:
    """The run's end, written only by the owner of the current attempt."""
    return (
        "UPDATE perdure_runs SET status = ?, output = ?, error = ?, usage = ?, owner = NULL, lease_expires = NULL, "
        "updated_at = ?, finished_at = ? WHERE run_id = ? AND owner = ? AND attempts = ? AND status = 'running'",
        (status, output, error, usage, at, at, *_fence(claim)),
    )


def suspend_run(claim: Claim, at: float) -> Statement:
    # A decision that arrived while this attempt was suspending leaves the run pending (to continue), never
    # waiting with nothing left to decide.
    return (
        "UPDATE perdure_runs SET status = CASE WHEN EXISTS (SELECT 1 FROM perdure_steps s WHERE s.run_id = "
        "perdure_runs.run_id AND s.status = 'waiting') THEN 'waiting' ELSE 'pending' END, owner = NULL, "
        "lease_expires = NULL, updated_at = ? WHERE run_id = ? AND owner = ? AND attempts = ? AND status = 'running'",
        (at, *_fence(claim)),
    )


def release_run(claim: Claim, at: float) -> Statement:
    """Give the run up without ending it (the caller's task was cancelled): any process may resume it."""
    return (
        "UPDATE perdure_runs SET status = 'pending', owner = NULL, lease_expires = NULL, updated_at = ? "
        "WHERE run_id = ? AND owner = ? AND attempts = ? AND status = 'running'",
        (at, *_fence(claim)),
    )


def renew_lease(claim: Claim, until: float) -> Statement:
    return (
        "UPDATE perdure_runs SET lease_expires = ? WHERE run_id = ? AND owner = ? AND attempts = ? "
        "AND status = 'running'",
        (until, *_fence(claim)),
    )


def set_trace_context(run_id: str, carrier: str) -> Statement:
    return ("UPDATE perdure_runs SET trace_context = ? WHERE run_id = ? AND trace_context IS NULL", (carrier, run_id))


def claim_run(run_id: str, status: str, previous_owner: str | None, owner: str, lease: float, at: float) -> Statement:
    """Take a run no live process executes: compare-and-swap on its status and owner; a new attempt number."""
    return (
        "UPDATE perdure_runs SET status = 'running', owner = ?, lease_expires = ?, attempts = attempts + 1, "
        "updated_at = ? WHERE run_id = ? AND status = ? AND owner IS ?",
        (owner, lease, at, run_id, status, previous_owner),
    )


def decide_step(run_id: str, key: str, decision: str, at: float) -> list[Statement]:
    return [
        (
            "UPDATE perdure_steps SET status = 'done', result = ?, finished_at = ? "
            "WHERE run_id = ? AND key = ? AND status = 'waiting'",
            (decision, at, run_id, key),
        ),
        # The run continues once none of its calls waits any more, judged inside this transaction: two people
        # deciding a run's two calls at the same moment must not each leave the flip to the other.
        (
            "UPDATE perdure_runs SET status = 'pending', updated_at = ? WHERE run_id = ? AND status = 'waiting' "
            "AND NOT EXISTS (SELECT 1 FROM perdure_steps WHERE run_id = ? AND status = 'waiting')",
            (at, run_id, run_id),
        ),
    ]


def cancel_run(run_id: str, error: str, at: float, row: RunRow, orphaned: bool) -> list[Statement]:
    return [
        # Nobody executes a pending or waiting run: it ends now. A running one stops at its next step boundary.
        (
            "UPDATE perdure_runs SET status = 'cancelled', cancel_requested = 1, error = ?, updated_at = ?, "
            "finished_at = ? WHERE run_id = ? AND status IN ('pending', 'waiting')",
            (error, at, at, run_id),
        ),
        # A running run whose process is gone has nobody to stop it at a step boundary: like a pending one, it ends
        # now (unless its owner renewed the lease meanwhile: compare-and-swap on owner and lease).
        (
            "UPDATE perdure_runs SET status = 'cancelled', cancel_requested = 1, error = ?, owner = NULL, "
            "lease_expires = NULL, updated_at = ?, finished_at = ? WHERE run_id = ? AND status = 'running' "
            "AND owner IS ? AND lease_expires IS ? AND ?",
            (error, at, at, run_id, row.owner, row.lease_expires, orphaned),
        ),
        (
            "UPDATE perdure_runs SET cancel_requested = 1, updated_at = ? WHERE run_id = ? AND status = 'running'",
            (at, run_id),
        ),
    ]


def now() -> float:
    return time.time()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
