"""Fixtures of the DBOS adapter's tests: DBOS on a SQLite system database in a temp dir, launched by the test
once its agents are constructed, destroyed (with its registry) after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perdure.testing.conformance.dbos import _poll_recovery_queue_often


@pytest.fixture
def dbos_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dbos-system.sqlite'}"


@pytest.fixture
def launch(dbos_url: str) -> Iterator[Callable[[], None]]:
    """``DBOS(config=...)`` now; call ``launch()`` after constructing the test's agents."""
    from dbos import DBOS

    _poll_recovery_queue_often()  # forked and dequeued runs start within 50 ms
    DBOS(
        config={
            "name": "perdure-tests",
            "system_database_url": dbos_url,
            "application_version": "tests",
            "log_level": "ERROR",
            "notification_listener_polling_interval_sec": 0.02,
            "scheduler_polling_interval_sec": 0.05,
        }
    )
    yield DBOS.launch
    DBOS.destroy(destroy_registry=True)
