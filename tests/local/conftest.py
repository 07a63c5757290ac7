"""Fixtures of the embedded engine's tests: a journal in a temp dir, side effects counted in a file, child
processes that run ``tests.local.agents`` through the conformance harness (and die by SIGKILL when told)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure.testing.conformance import Harness
from perdure.testing.conformance.scenarios import effects

ROOT = Path(__file__).resolve().parents[2]
# The installed console script, as a user runs it (next to this interpreter in a venv).
_SCRIPT = Path(sys.executable).with_name("perdure")
PERDURE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from perdure._cli import entry; entry()"]


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "journal.db")


@pytest.fixture
def effects_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Agents in this process count their side effects here (children get it from the harness)."""
    path = tmp_path / "effects.log"
    monkeypatch.setenv("PERDURE_EFFECTS", str(path))
    return path


def tool_calls(log: Path, run_id: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in effects(log, run_id) if e["kind"] == "tool" and (name is None or e["name"] == name)]


def model_calls(log: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in effects(log, run_id) if e["kind"] == "model"]


def make_harness(tmp_path: Path, journal: str, **options: Any) -> Harness:
    return Harness("local", "tests.local.agents:Driver", {"journal": journal, **options}, tmp_path, timeout=60)


@pytest.fixture
def harness(tmp_path: Path, journal: str, effects_log: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    # Children run with cwd=tmp_path: they find `tests.local.agents` through PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return make_harness(tmp_path, journal)


def perdure_cli(*args: str, cwd: Path | str = ROOT, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The real `perdure` command in a child process (wide terminal, so rich never truncates a cell)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [*PERDURE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, env=env, **kw)


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Children a test started; any still alive at the end are killed (a failing test leaves no orphan)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()
