"""One real Prefect server per test session, shared by in-process tests and child processes.

``prefect server start`` on a free loopback port with its own ``PREFECT_HOME`` in a temp dir; the child processes
of the conformance suite reach it through ``PREFECT_API_URL``. Its database is a fresh PostgreSQL database
(``PERDURE_TEST_PG``, default the server at 127.0.0.1:5432, user postgres), dropped at the end of the session;
without PostgreSQL, a SQLite file in the temp dir.

Why PostgreSQL first: on SQLite, Prefect's server answers HTTP 503 whenever two writes overlap (its transactions
begin deferred, and SQLite refuses to upgrade one while another writer commits), and Prefect's client retries
a 503 after 2, 4, 8... seconds. Even this suite's sequential load (a run being created while the previous
run's task-run events are recorded) hit that several times per test. The client's retry budget
(``PREFECT_CLIENT_MAX_RETRIES``) is raised for the children, so that on SQLite tests are slower, not flaky.

Services that nothing here needs (scheduler, late runs, automations, the foreman, the event persister) are off
to keep the 2-core machine free; the task run recorder stays on: task runs reach the server as events.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

START_TIMEOUT = 120.0
PG_DSN = os.environ.get("PERDURE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
DB_PREFIX = "perdure_prefect_"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="perdure-prefect-"))
        self.home = self.root / "home"
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.database: str | None = None  # the PostgreSQL database, when there is one
        self.database_url = self._postgres_database() or f"sqlite+aiosqlite:///{self.root / 'prefect.db'}"

    def _postgres_database(self) -> str | None:
        """A fresh database on the test PostgreSQL server, or None without one."""
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            return None
        try:
            with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
                _drop_orphans(conn)
                name = f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.Error:
            return None
        self.database = name
        info = conninfo_to_dict(PG_DSN)
        auth = str(info.get("user", "postgres")) + (f":{info['password']}" if info.get("password") else "")
        return f"postgresql+asyncpg://{auth}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"

    def client_env(self) -> dict[str, str]:
        """Settings for a process that talks to this server."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_CLIENT_MAX_RETRIES": "10",
        }

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=self.database_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
            PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
            PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
            PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED="false",
            PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED="false",
            PREFECT_API_LOG_RETRYABLE_ERRORS="true",  # a 503 leaves its cause in server.log
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        env.pop("PREFECT_API_URL", None)
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited ({self.proc.returncode}):\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Prefect server did not answer in {START_TIMEOUT}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.database is not None:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.root, ignore_errors=True)


def _die_with_parent() -> None:
    """In the server's process, before exec (Linux): SIGTERM when the test session dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _drop_orphans(conn: Any) -> None:
    """Drop the databases of earlier sessions whose process died before cleaning up (killed)."""
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (DB_PREFIX.replace("_", "\\_") + "%",))
    for (name,) in rows.fetchall():
        pid = name[len(DB_PREFIX) :].split("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SERVER: PrefectServer | None = None
_FAILURE: str | None = None


def shared_server(config: pytest.Config) -> PrefectServer:
    """The session's server: started on first use, stopped when the session ends (or the test is skipped)."""
    global _SERVER, _FAILURE
    if _SERVER is None and _FAILURE is None:
        try:
            import prefect  # noqa: F401
        except ImportError:
            _FAILURE = "prefect (pip install 'perdure[prefect]')"
        else:
            server = PrefectServer()
            config.add_cleanup(server.stop)
            try:
                server.start()
            except (OSError, RuntimeError) as e:
                _FAILURE = f"a local Prefect server ({e})"
            else:
                _SERVER = server
    require(_SERVER is not None, _FAILURE or "a local Prefect server")
    assert _SERVER is not None
    return _SERVER
