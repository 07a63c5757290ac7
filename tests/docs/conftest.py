"""Fixtures of the documentation tests: a working directory per example, a fake OpenAI server, and the engines'
servers (shared with the rest of the suite).

Examples that name a real provider model (``"openai:gpt-4.1-mini"``) run unchanged against a local HTTP server
that speaks the OpenAI wire format (``tests/providers/fake_server.py``): the real ``openai`` SDK sends the requests,
the test scripts the answers. Nothing reaches the internet, and no example needs a key.

When these tests run first in a session (``pytest tests/docs``), the Temporal and Prefect servers they need start in
the background as soon as collection ends, while the other tests run: starting Prefect's takes ~15 s. Their
fixtures wait for that start. In a whole-suite run the conformance tests, which run earlier, have started them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.providers.fake_server import FakeProviderServer


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The directory an example runs in (its perdure.db, ledgers and markers land here)."""
    return tmp_path


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai(_openai_server: FakeProviderServer) -> Iterator[FakeProviderServer]:
    """The fake OpenAI server, empty; queue its answers with ``enqueue``. Every queued answer must be used."""
    _openai_server.reset()
    yield _openai_server
    assert _openai_server.pending == 0, "the example asked the model fewer times than the test scripted"


@pytest.fixture
def openai_env(openai: FakeProviderServer) -> dict[str, str]:
    """What points the openai SDK at the fake server: the variables a reader sets for the real one."""
    return {"OPENAI_BASE_URL": openai.openai_base_url, "OPENAI_API_KEY": "sk-docs-test"}


@pytest.fixture
def dbos_databases(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Fresh PostgreSQL databases for DBOS, copied from the conformance suite's migrated template."""
    from tests.conformance.engine_dbos import PG_DSN, _postgres_databases
    from tests.conftest import require

    databases = _postgres_databases(request)
    require(databases is not None, f"PostgreSQL at {PG_DSN!r}")
    assert databases is not None
    return databases.fresh


def _temporal(config: pytest.Config) -> Any:
    from tests.temporal._devserver import dev_server

    return dev_server(config)


def _prefect(config: pytest.Config) -> Any:
    from tests.prefect._server import shared_server

    return shared_server(config)


_STARTERS = {"test_temporal.py": _temporal, "test_prefect.py": _prefect}
_STARTED: dict[str, threading.Event] = {}
# A server started with PR_SET_PDEATHSIG (tests/prefect/_server.py) gets SIGTERM when the *thread* that started it
# ends, not the process: the starting threads live until the session ends.
_SESSION_OVER = threading.Event()


def pytest_collection_finish(session: pytest.Session) -> None:
    items = session.items
    if not items or not items[0].nodeid.startswith("tests/docs/"):
        return  # other tests run first and start the servers themselves
    wanted = {item.path.name for item in items if item.path.name in _STARTERS}
    for name in sorted(wanted):
        started = _STARTED[name] = threading.Event()

        def start(
            starter: Callable[[pytest.Config], Any] = _STARTERS[name], started: threading.Event = started
        ) -> None:
            try:
                starter(session.config)
            except BaseException:  # a missing server: the fixture asks again, and skips or fails the test
                pass
            finally:
                started.set()
            _SESSION_OVER.wait()

        threading.Thread(target=start, name=f"start-{name}", daemon=True).start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _SESSION_OVER.set()


def _started(name: str) -> None:
    started = _STARTED.get(name)
    if started is not None:
        started.wait()


@pytest.fixture(scope="session")
def temporal_address(pytestconfig: pytest.Config) -> str:
    """The session's Temporal dev server (shared with tests/temporal and the conformance suite)."""
    _started("test_temporal.py")
    return str(_temporal(pytestconfig).address)


@pytest.fixture(scope="session")
def prefect_api_url(pytestconfig: pytest.Config) -> str:
    """The session's Prefect server (shared with tests/prefect and the conformance suite)."""
    _started("test_prefect.py")
    return str(_prefect(pytestconfig).api_url)
