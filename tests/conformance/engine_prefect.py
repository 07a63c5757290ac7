"""The conformance suite on Prefect: ``PrefectAgent`` against a real local Prefect server (one per session)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from perdure.testing.conformance import Harness
from tests.prefect._server import shared_server


def _prefect(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    server = shared_server(request.config)
    options = {
        "env": server.client_env(),
        "results": str(workdir / "results"),  # shared by the processes of one test, like a shared bucket
        # Tests share the server and reuse run ids (unique per flow): each test gets its own flow name.
        "namespace": hashlib.sha256(str(workdir).encode()).hexdigest()[:10],
    }
    return Harness("prefect", "perdure.testing.conformance.prefect:PrefectDriver", options, workdir)


ENGINES = {"prefect": _prefect}
