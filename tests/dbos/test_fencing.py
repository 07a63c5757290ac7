"""Fencing on DBOS (issue 13, item 4): two processes recovering one workflow never execute a step at once.

A run's process is SIGKILLed inside a tool call; then two processes recover the run at the same moment — with the
same executor id (both recover it at launch), or with their own ids, both recovering the dead executor's runs
(what DBOS Conductor or the admin API does). Real PostgreSQL, real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

PG_DSN = os.environ.get("PERDURE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        import psycopg

        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception:
        conn = None
    require(conn is not None, f"PostgreSQL at {PG_DSN!r}")
    assert conn is not None
    name = f"perdure_fence_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        from dbos import DBOS

        DBOS.migrate(url)
        yield url
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def child(url: str, executor: str, workdir: Path, recover: str | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.dbos.fence_child", url, executor, str(workdir)]
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "1"}
    return subprocess.Popen(
        [*args, *([recover] if recover else [])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def holding(workdir: Path, procs: list[subprocess.Popen[str]]) -> int:
    """The pid of the first of ``procs`` to hold the tool call (a child that exits first fails the test)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for p in procs:
            if (workdir / f"holding-{p.pid}").exists():
                return p.pid
            if p.poll() is not None:
                out, err = p.communicate()
                raise AssertionError(f"child {p.pid} exited ({p.returncode}) before the tool call:\n{out}\n{err}")
        time.sleep(0.02)
    raise AssertionError("no child reached the tool call")


def effects(workdir: Path) -> list[tuple[str, int]]:
    lines = (workdir / "effects").read_text().split()
    return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]


@pytest.mark.parametrize(
    "recoverers",
    [
        pytest.param([("exec-a", None), ("exec-a", None)], id="same-executor-id"),
        pytest.param([("exec-b", "exec-a"), ("exec-c", "exec-a")], id="different-executor-ids"),
    ],
)
def test_two_processes_recovering_one_run(
    pg_url: str, tmp_path: Path, recoverers: list[tuple[str, str | None]]
) -> None:
    first = child(pg_url, "exec-a", tmp_path)
    holding(tmp_path, [first])
    first.send_signal(signal.SIGKILL)  # killed inside the tool call: the workflow is left PENDING for exec-a
    first.communicate(timeout=DEADLINE)

    procs = [child(pg_url, executor, tmp_path, recover) for executor, recover in recoverers]
    try:
        holding(tmp_path, procs)
        (tmp_path / "release").write_text("1")
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=DEADLINE)
            assert p.returncode == 0, err
            outputs.append(out.strip())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert outputs == ["done: hold=held", "done: hold=held"]

    # The killed process began the call and never ended it; after it, one execution at a time ran it. (With one
    # executor id, DBOS's recovery in the second process may take the run from the first after it began: that
    # execution is stopped, or its result is refused, and the call runs again: at least once, never at once.)
    log = [(what, pid) for what, pid in effects(tmp_path) if pid != first.pid]
    active: set[int] = set()
    for what, pid in log:
        if what == "begin":
            assert not active, f"the call was executed by two live processes at once: {log}"
            active.add(pid)
        else:
            active.discard(pid)
    assert log and log[-1][0] == "end", log
