"""Prefect without a server of its own (no PREFECT_API_URL): Prefect starts a temporary server per process.

A process killed with SIGKILL leaves its temporary server running on Prefect's database; the next process would
stall on "database is locked". perdure warns at start and, on resume, names the leftover server and what to do.
Real processes and real temporary servers (one Prefect home per test), no server of the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("prefect")

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    from perdure import Agent
    from perdure.prefect import PrefectAgent, TaskConfig
    from perdure.testing import TestModel

    agent = Agent(TestModel(custom_output_text="Charged."), name="temporary")

    @agent.tool_plain
    def charge_card(amount: int) -> str:
        \"\"\"Charge a card.\"\"\"
        if sys.argv[1] == "run":
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-tool: its temporary server is left running
        return "charged"

    prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=Path("results")))
    if sys.argv[1] == "run":
        prefect_agent.run_sync("charge", run_id="order-1")
    else:
        print("output:", prefect_agent.resume_sync("order-1").output)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="leftover servers are found through /proc")
def test_a_leftover_temporary_server_is_named_not_waited_on(tmp_path: Path) -> None:
    from perdure.prefect._ephemeral import leftovers

    home = tmp_path / "home"
    database = f"sqlite+aiosqlite:///{home}/prefect.db"
    (tmp_path / "app.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")

    def app(op: str, name: str) -> tuple[int, str]:
        # Output to files: a leftover server inherits the process's stdout and stderr, and never closes them.
        with open(tmp_path / f"{name}.out", "wb") as out:
            code = subprocess.run(
                [sys.executable, "app.py", op], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180
            ).returncode
        return code, (tmp_path / f"{name}.out").read_text(errors="replace")

    try:
        code, out = app("run", "first")
        assert code == -signal.SIGKILL, out
        assert "PREFECT_API_URL is not set" in out  # the warning at start
        left = leftovers(database)
        assert len(left) == 1, out

        code, out = app("resume", "second")
        assert code != 0
        assert f"kill {left[0].pid}" in out and "database is locked" in out, out  # what is wrong, what to do
        assert f"PREFECT_API_URL=http://127.0.0.1:{left[0].port}/api" in out
    finally:
        for server in leftovers(database):
            os.kill(server.pid, signal.SIGTERM)  # the temporary server this test's first process started
    _wait_gone(database)

    code, out = app("resume", "third")  # once it is stopped, the run is resumed where it stopped
    assert code == 0 and "output: Charged." in out, out


def _wait_gone(database: str) -> None:
    import time

    from perdure.prefect._ephemeral import leftovers

    deadline = time.monotonic() + 30
    while leftovers(database) and time.monotonic() < deadline:
        time.sleep(0.2)
