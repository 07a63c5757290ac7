"""The reference engine (``perdure.durable.memory``): proof that the ports are all an engine needs."""

from pathlib import Path

import pytest

from perdure.testing.conformance import Harness


def _memory(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    driver = "perdure.testing.conformance.memory:MemoryDriver"
    return Harness("memory", driver, {"path": str(workdir / "runs.json")}, workdir)


ENGINES = {"memory": _memory}
