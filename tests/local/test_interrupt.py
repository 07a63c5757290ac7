"""Ctrl-C in a durable run: the run is given back (not failed), and the message says how to continue it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from perdure import DurableAgent

from .agents import quick

CHILD = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from perdure import DurableAgent
from tests.local.agents import quick

agent = quick("interrupted")
agent._tools.clear()

@agent.tool_plain
async def stamp(n: int) -> str:
    \"\"\"Stamp.\"\"\"
    Path({marker!r}).write_text("in")
    await asyncio.sleep(60)
    return "late"

DurableAgent(agent, journal={journal!r}).run_sync("ctrlc-1|go", run_id="ctrlc-1")
"""


def test_ctrl_c_gives_the_run_back_and_says_how_to_resume(tmp_path: Path) -> None:
    journal, marker = tmp_path / "j.db", tmp_path / "in-tool"
    code = CHILD.format(root=str(Path(__file__).parents[2]), marker=str(marker), journal=str(journal))
    env = {"PERDURE_EFFECTS": str(tmp_path / "effects.jsonl"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    assert "interrupted: run 'ctrlc-1' is kept" in err and "perdure runs resume ctrlc-1" in err, err
    durable = DurableAgent(quick("interrupted"), journal=journal)
    info = durable.get_run_sync("ctrlc-1")
    assert info.status == "pending" and info.error is None  # given back, not failed
