"""docs/engines/temporal.md, on the session's Temporal dev server: a worker process (worker.py, as the page runs
it), and the programs that start runs, approve them, and run the agent inside a workflow of your own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._run import EXAMPLES, run_example, start_process, stop_process


@pytest.fixture(scope="module")
def temporal_env(temporal_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """TEMPORAL_ADDRESS, with `python worker.py` running against it for the module's tests."""
    env = {"TEMPORAL_ADDRESS": temporal_address}
    cwd = tmp_path_factory.mktemp("temporal-worker")
    worker = start_process([sys.executable, str(EXAMPLES / "temporal_engine/worker.py")], cwd=cwd, env=env)
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if line != "worker ready\n":
        _, out, err = stop_process(worker)
        pytest.fail(f"worker.py did not start: {line}{out}{err}")
    yield env
    code, _, err = stop_process(worker)
    assert code == 0, err  # SIGTERM: the worker finished its tasks and left


def test_run(temporal_env: dict[str, str], workdir: Path) -> None:
    run_example("temporal_engine/run.py", cwd=workdir, env=temporal_env)
    # The same run id again: the recorded result, from the finished workflow.
    assert run_example("temporal_engine/run.py", cwd=workdir, env=temporal_env).startswith("Order 42 has shipped.")


def test_approvals(temporal_env: dict[str, str], workdir: Path) -> None:
    run_example("temporal_engine/approvals.py", cwd=workdir, env=temporal_env)


def test_an_agent_in_your_own_workflow(temporal_env: dict[str, str], workdir: Path) -> None:
    run_example("temporal_engine/ticket.py", cwd=workdir, env=temporal_env)
