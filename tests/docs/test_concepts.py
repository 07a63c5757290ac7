"""docs/concepts.md: steps and replay, at-most-once tools, approvals, cancellation, non-determinism, versioning."""

from __future__ import annotations

from pathlib import Path

from ._run import run_example


def test_steps(workdir: Path) -> None:
    out = run_example("concepts/steps.py", cwd=workdir)
    assert out.count("charging") == 1  # the second run with the same id executed nothing


def test_at_most_once_after_a_crash(workdir: Path) -> None:
    run_example("concepts/at_most_once.py", cwd=workdir, fresh_process=True, returncode=-9)
    out = run_example("concepts/at_most_once.py", "recover", cwd=workdir, fresh_process=True)
    assert "transfers sent: 1\n" in out


def test_approvals(workdir: Path) -> None:
    run_example("concepts/approvals.py", cwd=workdir)


def test_cancel(workdir: Path) -> None:
    run_example("concepts/cancel.py", cwd=workdir)


def test_nondeterminism(workdir: Path) -> None:
    out = run_example("concepts/nondeterminism.py", cwd=workdir)
    assert "no longer replays" in out


def test_versioning(workdir: Path) -> None:
    run_example("concepts/versioning.py", cwd=workdir)
