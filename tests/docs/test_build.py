"""The site builds with ``mkdocs build --strict`` (``make docs``): a broken link or anchor, a missing include, a
docstring mkdocstrings cannot render, fails the test suite, so ``make test`` (and CI) includes the docs build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ._run import ROOT


def test_the_site_builds_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-6000:]
    site = tmp_path / "site"
    assert (site / "index.html").exists()
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "usage: perdure runs list" in cli  # the help texts were generated into the page
    api = (site / "reference" / "api" / "perdure" / "index.html").read_text()
    assert 'id="perdure.DurableAgent.run"' in api  # the API reference was generated from the docstrings
