"""docs/engines/embedded.md: runs accepted by one process and executed by a worker (CLI or Python)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ._run import EXAMPLES, perdure, run_example, start_process, stop_process

PERDURE = str(Path(sys.executable).with_name("perdure"))  # the console script a reader runs
APP = {"PYTHONPATH": str(EXAMPLES / "embedded")}  # `perdure worker app:durable` imports app from there


def completed(workdir: Path) -> list[str]:
    out = perdure("runs", "list", "--journal", "fulfilment.db", "--status", "completed", "--json", cwd=workdir)
    return sorted(run["run_id"] for run in json.loads(out))


def wait_for(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_perdure_worker_executes_accepted_runs(workdir: Path) -> None:
    out = run_example("embedded/start.py", cwd=workdir)
    assert out.count("accepted") == 3
    worker = start_process([PERDURE, "worker", "app:durable"], cwd=workdir, env=APP)
    try:
        run_example("embedded/wait.py", cwd=workdir)
        wait_for(lambda: len(completed(workdir)) == 3)
    finally:
        code, out, err = stop_process(worker)
    assert code == 0, err
    assert "perdure worker: agent fulfilment" in out

    # The commands the page shows to look inside the journal.
    assert "ship-A-3" in perdure("runs", "list", "--journal", "fulfilment.db", cwd=workdir)
    assert "completed" in perdure("runs", "show", "ship-A-1", "--journal", "fulfilment.db", cwd=workdir)
    assert completed(workdir) == ["ship-A-1", "ship-A-2", "ship-A-3"]


def test_a_worker_in_python(workdir: Path) -> None:
    run_example("embedded/start.py", cwd=workdir)
    worker = start_process([sys.executable, str(EXAMPLES / "embedded/worker.py")], cwd=workdir, env=APP)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "worker ready\n"
        wait_for(lambda: len(completed(workdir)) == 3)
    finally:
        code, _, err = stop_process(worker)
    assert code == 0, err  # SIGTERM: serve() returned, the process exited cleanly
