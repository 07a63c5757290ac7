"""The DBOS adapter in the conformance suite: on a SQLite system database and on PostgreSQL.

Each test gets its own system database, copied from one migrated once per session (a file copy for SQLite, a
``CREATE DATABASE ... TEMPLATE`` for PostgreSQL): isolation without paying DBOS's migrations in every test.
PostgreSQL is the server at 127.0.0.1:5432 (user postgres); the session's databases are dropped at its end.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perdure.testing.conformance import Harness
from tests.conftest import require

PG_DSN = os.environ.get("PERDURE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
DRIVER = "perdure.testing.conformance.dbos:DBOSDriver"


def _migrate(url: str) -> None:
    from dbos import DBOS

    DBOS.migrate(url)


class PostgresDatabases:
    """Databases on the test server: one migrated template per session, one copy of it per test."""

    def __init__(self, conn: Any, prefix: str) -> None:
        self.conn = conn
        self.template = f"{prefix}_template"
        self._names = (f"{prefix}_{i}" for i in itertools.count())
        self.created: list[str] = []

    @staticmethod
    def url(name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    def fresh(self) -> str:
        name = next(self._names)
        self.conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        for name in [*self.created, self.template]:
            self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.conn.close()


# Session-wide state. The suite's conftest loads this module as a plain module (not a plugin), so it keeps its
# session resources here and releases them with config.add_cleanup, at the end of the session.
_session: dict[str, Any] = {}


def _drop_orphans(conn: Any) -> None:
    """Drop the databases of earlier sessions on this machine whose process died before cleaning up (killed)."""
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'perdure\\_dbos\\_%'").fetchall()
    for (name,) in rows:
        pid = name.split("_")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sqlite_template(request: pytest.FixtureRequest) -> Path:
    if "sqlite" not in _session:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        path = factory.mktemp("dbos-template") / "system.sqlite"
        _migrate(f"sqlite:///{path}")
        _session["sqlite"] = path
    path: Path = _session["sqlite"]
    return path


def _postgres_databases(request: pytest.FixtureRequest) -> PostgresDatabases | None:
    if "postgres" not in _session:
        _session["postgres"] = None
        try:
            import psycopg

            conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
        except Exception:
            return None
        _drop_orphans(conn)
        dbs = PostgresDatabases(conn, f"perdure_dbos_{os.getpid()}_{uuid.uuid4().hex[:6]}")
        conn.execute(f'CREATE DATABASE "{dbs.template}"')
        request.config.add_cleanup(dbs.drop_all)
        request.config.add_cleanup(lambda: _session.pop("postgres", None))
        _migrate(dbs.url(dbs.template))
        _session["postgres"] = dbs
    dbs: PostgresDatabases | None = _session["postgres"]
    return dbs


class _Harness(Harness):
    """The suite's harness; its children skip loading pydantic plugins (logfire's: a third of a second each,
    and about a hundred children per session here). Nothing in the scenarios uses them."""

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"PYDANTIC_DISABLE_PLUGINS": "1", **super()._env(extra)}


def _sqlite(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    path = workdir / "dbos-system.sqlite"
    shutil.copyfile(_sqlite_template(request), path)
    return _Harness("dbos-sqlite", DRIVER, {"url": f"sqlite:///{path}"}, workdir)


def _postgres(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    dbs = _postgres_databases(request)
    require(dbs is not None, f"PostgreSQL at {PG_DSN!r}")
    assert dbs is not None
    return _Harness("dbos-postgres", DRIVER, {"url": dbs.fresh()}, workdir)


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "dbos-sqlite": _sqlite,
    "dbos-postgres": _postgres,
}
