"""docs/engines/dbos.md, on the machine's PostgreSQL (a fresh database per program): the smallest program, an
approval, recovery after a SIGKILL, and DBOS's command line on the runs. Each example launches DBOS in its own
process; the independent ones run side by side."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ._run import DOCS, run_concurrently, run_example
from .test_pages import blocks


def test_dbos_examples(dbos_databases: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> None:
    app = {"cwd": tmp_path_factory.mktemp("app"), "env": {"DBOS_SYSTEM_DATABASE_URL": dbos_databases()}}
    approvals = {"cwd": tmp_path_factory.mktemp("approvals"), "env": {"DBOS_SYSTEM_DATABASE_URL": dbos_databases()}}
    crash = {"cwd": tmp_path_factory.mktemp("crash"), "env": {"DBOS_SYSTEM_DATABASE_URL": dbos_databases()}}
    run_concurrently(
        ("dbos_engine/app.py", (), app),
        ("dbos_engine/approvals.py", (), approvals),
        ("dbos_engine/crash.py", (), {**crash, "returncode": -9}),  # killed inside charge_card
    )
    run_example("dbos_engine/crash.py", fresh_process=True, **crash)  # type: ignore[arg-type]  # recovers order-7
    check_dbos_command_line(app["cwd"], app["env"])  # type: ignore[arg-type]


def check_dbos_command_line(cwd: Path, env: dict[str, str]) -> None:
    """The page's `perdure runs ... --dbos` and `dbos workflow ...` commands on the smallest program's database, run
    as a reader would: in a shell, with the variable exported. (`perdure approve --dbos` is parsed in test_pages:
    the database holds no waiting run.)"""
    shown = [
        line
        for lang, body in blocks(DOCS / "engines" / "dbos.md")
        if lang == "bash"
        for line in body.splitlines()
        if line.startswith(("dbos workflow", "perdure runs"))
    ]
    assert len(shown) == 5
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # as in an activated venv
    for line in shown:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=cwd,
            env={**os.environ, **env, "PATH": path, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"
        if "--stuck" in line:
            assert "refund-42" not in done.stdout  # finished: not stuck
        else:
            assert re.search(r"refund-42|turn/1/model", done.stdout), f"{line}: {done.stdout}"
