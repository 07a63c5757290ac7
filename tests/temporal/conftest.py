"""Fixtures for the Temporal adapter's own tests: the session's dev server, a fresh task queue per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client  # a dev dependency: missing, these tests fail loudly rather than skip
from temporalio.worker import Worker

from perdure.temporal import PerdurePlugin, TemporalAgent

from ._devserver import DevServer, dev_server


@pytest.fixture(scope="session")
def temporal_server(pytestconfig: pytest.Config) -> DevServer:
    """The real dev server (``temporal server start-dev``), started once per session and stopped at its end."""
    return dev_server(pytestconfig)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    task_queue: str,
    *agents: TemporalAgent[Any, Any],
    plugin: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Worker]:
    """A worker for ``agents`` on ``task_queue`` while the block runs (``options`` go to ``Worker``)."""
    worker = Worker(client, task_queue=task_queue, plugins=[PerdurePlugin(*agents, **(plugin or {}))], **options)
    async with worker:
        yield worker


async def history_bytes(client: Client, workflow_id: str) -> int:
    """The size of the workflow's (current run's) history, as the server counts it."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    size: int = desc.raw_description.workflow_execution_info.history_size_bytes
    return size
