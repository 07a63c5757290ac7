"""The Temporal engine in the conformance suite: the real dev server (one per session), a task queue per test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from perdure.testing.conformance import Harness

from ..temporal._devserver import dev_server


class _TemporalHarness(Harness):
    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = super()._env(extra)
        # Each child imports pydantic; the venv's logfire registers a pydantic plugin whose import costs most
        # of a second per child process. perdure does not use it.
        env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        return env


def _temporal(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    server = dev_server(request.config)
    options = {
        "address": server.address,
        "namespace": server.namespace,
        "task_queue": f"conformance-{uuid.uuid4().hex[:12]}",
        "heartbeat_timeout": 2,
        "workflow_task_timeout": 2,
    }
    return _TemporalHarness("temporal", "perdure.testing.conformance.temporal:TemporalDriver", options, workdir)


ENGINES = {"temporal": _temporal}
