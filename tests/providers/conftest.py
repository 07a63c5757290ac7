"""Fixtures: one fake provider server per session, its script and records reset for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_server import FakeProviderServer


@pytest.fixture(scope="session")
def _provider_server() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(_provider_server: FakeProviderServer) -> Iterator[FakeProviderServer]:
    """The fake OpenAI/Anthropic server on 127.0.0.1; queue answers with ``enqueue``, read ``requests``."""
    _provider_server.reset()
    yield _provider_server
    assert _provider_server.pending == 0, "the test left scripted answers unused"
