"""docs/testing.md: the example test file passes under pytest; the conformance kit by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ._run import EXAMPLES, run_example


def test_the_example_tests_pass(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "testing/test_support.py")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_conformance_kit_by_hand(workdir: Path) -> None:
    run_example("testing/conformance_crash.py", cwd=workdir)


def test_the_memory_engine_example(workdir: Path) -> None:
    assert run_example("testing/memory_engine.py", cwd=workdir).strip() == "completed"
