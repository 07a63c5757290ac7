"""A wrong DBOS URL or a database that is not DBOS's: one clear message each, and nothing created or changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import UserError
from perdure.dbos import admin
from tests.conftest import require

PG_DSN = os.environ.get("PERDURE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def refused(url: str) -> str:
    with pytest.raises(UserError) as caught:
        admin(url).close()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message and "[SQL" not in message, message
    return message


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo.sqlite"
    message = refused(f"sqlite:///{typo}")
    assert f"the file {typo} does not exist (nothing was created)" in message
    assert "sqlite:////absolute/path.sqlite" in message  # what to do
    assert not typo.exists()


def test_files_that_are_not_dbos_system_databases_are_left_as_they_were(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert "is not a DBOS system database (it has no workflow_status table). It is empty." in refused(
        f"sqlite:///{empty}"
    )
    assert empty.stat().st_size == 0

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 100)
    before = digest(text)
    assert "is not a SQLite database" in refused(f"sqlite:///{text}")
    assert digest(text) == before

    journal = tmp_path / "perdure.db"
    with sqlite3.connect(journal) as conn:
        conn.execute("CREATE TABLE perdure_runs (run_id TEXT)")
    before = digest(journal)
    message = refused(f"sqlite:///{journal}")
    assert "Nothing was changed" in message and "It is a perdure journal" in message and "--journal" in message
    assert digest(journal) == before


def test_urls_that_are_not_database_urls() -> None:
    assert "is not a database URL" in refused("not a url")
    assert "PostgreSQL or SQLite, not 'mysql'" in refused("mysql://root@127.0.0.1/app")
    assert "in-memory SQLite database" in refused("sqlite://")


def test_an_unreachable_server() -> None:
    message = refused("postgresql://postgres@127.0.0.1:1/app")
    assert message.startswith("cannot use the DBOS system database 'postgresql://postgres@127.0.0.1:1/app':")
    assert "Nothing was changed" in message and "server is running" in message


@pytest.fixture
def postgres() -> Iterator[Any]:
    try:
        import psycopg

        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception:
        conn = None
    require(conn is not None, f"PostgreSQL at {PG_DSN!r}")
    yield conn
    conn.close()


def test_postgres_missing_and_foreign_databases(postgres: Any) -> None:
    name = f"perdure_urls_{uuid.uuid4().hex[:8]}"
    message = refused(f"postgresql://postgres@127.0.0.1:5432/{name}")
    assert f'database "{name}" does not exist' in message and "Nothing was changed" in message
    assert postgres.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None

    postgres.execute(f'CREATE DATABASE "{name}"')
    try:
        message = refused(f"postgresql://postgres@127.0.0.1:5432/{name}")
        assert "is not a DBOS system database" in message and "Nothing was changed" in message
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            schemas = conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = 'dbos'")
            assert schemas.fetchone() is None  # no schema, no table: the database is as it was
    finally:
        postgres.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
