"""A full disk during a step commit: the run stops with a clear error (what failed, that nothing was lost, what to
do), it is not marked failed, and once space is back a new process resumes it to the end; the journal is intact.

The journal lives on a small tmpfs mounted for the test (root only; skipped locally without it, failed in CI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import require
from .conftest import Workspace, outcome, query, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)], capture_output=True
    )
    require(mounted.returncode == 0, f"a tmpfs to fill (mount -t tmpfs needs root: {mounted.stderr.decode().strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem says there is no space left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == 28, e  # ENOSPC
    try:
        while True:  # the last few blocks, a little at a time
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_when_space_returns(ws: Workspace, small_disk: Path) -> None:
    ws.journal = str(small_disk / "journal.db")
    env = {"FAULTS_GATE": "tool:fetch"}
    a = ws.spawn("run", ws.journal, "stall", "r1", env=env)
    wait_until((ws.dir / "at-tool_fetch").exists, "worker A inside its first tool call")
    filler = fill(small_disk)
    (ws.dir / "release").write_text("")  # the tool returns; its result's commit finds the disk full

    out, err = a.communicate(timeout=60)
    assert a.returncode == 0, err
    stopped = outcome(out, err)
    assert stopped["error"] == "UserError", stopped
    message = stopped["message"]
    assert f"the journal {ws.journal} refused to record" in message and "full" in message  # what failed
    assert "Nothing recorded before is lost" in message and "not marked failed" in message  # that nothing was lost
    assert "Free space" in message and "perdure runs resume r1" in message  # what to do
    assert "Traceback" not in err, err
    row = ws.run_row("r1")
    assert row["status"] in ("running", "pending") and row["error"] is None, row
    assert [s[1] for s in ws.steps("r1")] == ["turn/1/model"]  # what was recorded before is there

    filler.unlink()
    b = ws.call("resume", ws.journal, "stall", "r1")
    assert b == {"output": "done after 3 calls"}, b
    assert ws.run_row("r1")["status"] == "completed"
    assert query(ws.journal, "PRAGMA integrity_check") == [("ok",)]
    starts = [(e["name"], e["pid"]) for e in ws.events() if e["event"] == "start"]
    # The model's first answer was recorded: it replays. The fetch's result never reached the disk: it runs again.
    assert [name for name, _ in starts] == ["turn/1", "fetch", "fetch", "turn/2", "pay", "turn/3", "notify", "turn/4"]
    assert [pid for _, pid in starts][:2] == [a.pid, a.pid]
