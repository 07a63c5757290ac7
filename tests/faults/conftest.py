"""The fault suite's workspace: a journal, a side-effect log and worker processes that the tests stop, resume and
kill with real signals. Every child a test starts is killed at its end, whatever happened."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .agents import read_log

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("perdure")
PERDURE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from perdure._cli import entry; entry()"]


@dataclass
class Workspace:
    dir: Path
    journal: str
    log: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def spawn(self, *args: str, env: dict[str, str] | None = None, cli: bool = False) -> subprocess.Popen[str]:
        """A worker process (``tests.faults.worker``), or the ``perdure`` command with ``cli=True``."""
        cmd = [*PERDURE, *args] if cli else [sys.executable, "-m", "tests.faults.worker", *args]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def call(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
        """Run a worker process to its end; its last JSON line."""
        proc = self.spawn(*args, env=env)
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{err}"
        return outcome(out, err)

    def events(self) -> list[dict[str, Any]]:
        return read_log(self.log)

    def steps(self, run_id: str) -> list[tuple[Any, ...]]:
        """The run's step rows, by sequence: (run_id, key, seq, kind, describe, status, result, payload, attempt,
        started_at, finished_at)."""
        columns = "run_id, key, seq, kind, describe, status, result, payload, attempt, started_at, finished_at"
        return query(self.journal, f"SELECT {columns} FROM perdure_steps WHERE run_id = ? ORDER BY seq", (run_id,))

    def run_row(self, run_id: str) -> dict[str, Any]:
        rows = query(
            self.journal,
            "SELECT status, owner, attempts, lease_expires, error FROM perdure_runs WHERE run_id = ?",
            (run_id,),
        )
        assert rows, f"no run {run_id!r}"
        return dict(zip(("status", "owner", "attempts", "lease_expires", "error"), rows[0], strict=True))


def outcome(out: str, err: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no outcome printed; stderr:\n{err}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def query(journal: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    # The test process holds no other connection to the journal, so closing this one drops no lock of its own.
    conn = sqlite3.connect(journal, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 40, state: Callable[[], object] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"; state: {state()}" if state else ""))
        time.sleep(0.02)


def pause(proc: subprocess.Popen[str], journal: str) -> None:
    """SIGSTOP ``proc`` at a moment it holds no write lock on the journal.

    A process stopped inside a commit would block every other writer of the journal (SQLite's lock is the file's);
    that is SQLite's own limit, not what the fault suite is about. So the test checks it can take the write lock,
    and if not, lets the process finish its commit and stops it again.
    """
    for _ in range(100):
        os.kill(proc.pid, signal.SIGSTOP)
        conn = sqlite3.connect(journal, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.005)
        finally:
            conn.close()
    raise AssertionError("could not stop the worker outside a journal transaction")


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "FAULTS_DIR": str(tmp_path),
        "FAULTS_LOG": str(tmp_path / "effects.log"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PERDURE_JOURNAL", None)
    workspace = Workspace(tmp_path, str(tmp_path / "journal.db"), tmp_path / "effects.log", env)
    yield workspace
    for p in workspace.procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
        p.communicate()
