"""The engines the conformance suite runs on. An engine registers by adding a factory to ENGINES.

A factory takes (request, workdir) and returns a ``Harness`` whose driver runs in child processes; it may use
session fixtures (servers, databases) through ``request.getfixturevalue``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perdure.testing.conformance import Harness


def _local(request: pytest.FixtureRequest, workdir: Path) -> Harness:
    return Harness(
        "local", "perdure.testing.conformance.local:LocalDriver", {"journal": str(workdir / "j.db")}, workdir
    )


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {"local": _local}

# Each adapter registers from its own module, tests/conformance/engine_<name>.py, defining
# ENGINES = {"<name>": factory, ...}; so adapters never edit a shared file.
for _path in sorted(Path(__file__).parent.glob("engine_*.py")):
    _module = importlib.import_module(f"{__package__}.{_path.stem}")
    ENGINES.update(_module.ENGINES)


@pytest.fixture(params=sorted(ENGINES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    factory = ENGINES[request.param]
    return factory(request, tmp_path)
