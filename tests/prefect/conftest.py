"""Fixtures of the Prefect adapter's tests: the session's real Prefect server, and a flow name per test.

Tests share one server and reuse run ids; run ids are unique per flow, so each test names its agent apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from ._server import PrefectServer, shared_server


@pytest.fixture(scope="session")
def prefect_server(request: pytest.FixtureRequest) -> Iterator[PrefectServer]:
    """The server, with this process's Prefect settings pointing at it for the whole session."""
    server = shared_server(request.config)
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        PREFECT_LOGGING_TO_API_ENABLED,
        temporary_settings,
    )

    updates = {PREFECT_API_URL: server.api_url, PREFECT_LOGGING_TO_API_ENABLED: False, PREFECT_CLIENT_MAX_RETRIES: 10}
    with temporary_settings(updates=updates):
        yield server


@pytest.fixture
def name(prefect_server: PrefectServer) -> str:
    """A fresh agent (flow) name for this test."""
    return f"agent-{uuid4().hex[:10]}"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """The test's result storage."""
    path = tmp_path / "results"
    path.mkdir()
    return path
