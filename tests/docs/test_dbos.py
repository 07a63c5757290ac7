"""docs/engines/dbos.md, on the machine's PostgreSQL (a fresh database per test): the smallest program, recovery
after a SIGKILL, an approval, and DBOS's command line on the runs. Each example launches DBOS in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ._run import DOCS, run_example
from .test_pages import blocks


def test_smallest_program_and_dbos_command_line(dbos_database: str, workdir: Path) -> None:
    env = {"DBOS_SYSTEM_DATABASE_URL": dbos_database}
    run_example("dbos_engine/app.py", cwd=workdir, env=env, fresh_process=True)
    shown = [
        line
        for lang, body in blocks(DOCS / "engines" / "dbos.md")
        if lang == "bash"
        for line in body.splitlines()
        if line.startswith("dbos workflow")
    ]
    assert len(shown) == 2
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # as in an activated venv
    for line in shown:  # run as a reader would, in a shell with the variable exported
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=workdir,
            env={**os.environ, **env, "PATH": path},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert re.search(r"refund-42|turn/1/model", done.stdout), done.stdout


def test_recovery_after_a_crash(dbos_database: str, workdir: Path) -> None:
    env = {"DBOS_SYSTEM_DATABASE_URL": dbos_database}
    run_example("dbos_engine/crash.py", cwd=workdir, env=env, fresh_process=True, returncode=-9)
    run_example("dbos_engine/crash.py", cwd=workdir, env=env, fresh_process=True)


def test_approvals(dbos_database: str, workdir: Path) -> None:
    run_example(
        "dbos_engine/approvals.py", cwd=workdir, env={"DBOS_SYSTEM_DATABASE_URL": dbos_database}, fresh_process=True
    )
