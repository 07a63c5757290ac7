"""``perdure.prefect.admin(api_url)``: the run-admin port over a Prefect server, used from processes that never
construct an agent (as the command line does): decide, cancel, inspect and prune runs that agents made elsewhere.
Real processes against the session's real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perdure.prefect import PrefectAdmin, PrefectAgent, TaskConfig, admin
from perdure.prefect import _names as names
from perdure.runs import RunInfo
from perdure.testing.conformance import Harness
from tests.conformance.engine_prefect import ENGINES

from ._server import PrefectServer
from .agents import Counted, one_tool_then_text

ADMIN = """
import asyncio, json, sys
from perdure.prefect import admin

async def main(op, run_id, *args):
    runs = admin(sys.argv[1])
    if op == "decide":
        await runs.decide(run_id, args[0], approved=args[1] == "yes", note="from a process with no agent")
    elif op == "cancel":
        await runs.cancel(run_id)
    info = await runs.get_run(run_id)
    print(json.dumps(info.to_json()))

asyncio.run(main(*sys.argv[2:]))
"""


def _admin(server: PrefectServer, *args: str) -> dict[str, Any]:
    """An admin operation in a fresh process that imports no agent: the run as the admin sees it afterwards."""
    env = {**os.environ, **server.client_env(), "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    out = subprocess.run(
        [sys.executable, "-c", ADMIN, server.api_url, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def _harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return ENGINES["prefect"](request, tmp_path)


def test_decide_and_cancel_from_a_process_with_no_agent(
    request: pytest.FixtureRequest, tmp_path: Path, prefect_server: PrefectServer
) -> None:
    harness = _harness(request, tmp_path)
    assert harness.call("run", scenario="approval", run_id="refund-1")["status"] == "waiting"
    decided = _admin(prefect_server, "decide", "refund-1", "r1", "yes")
    assert decided["status"] == "pending" and decided["pending"] == []  # resumed in Prefect: ready to execute
    approval = next(s for s in decided["steps"] if s["key"] == "turn/1/approval/r1")
    assert (approval["kind"], approval["status"]) == ("approval", "done")  # who decided what shows at once
    assert approval["result"] == {"approved": True, "note": "from a process with no agent"}
    out = harness.call("resume", scenario="approval", run_id="refund-1")
    assert out["status"] == "completed" and "refunded 4200" in out["output"], out
    assert len(harness.tool_effects("refund-1", "refund")) == 1

    held = harness.spawn("run", scenario="slow", run_id="held-1")
    harness.wait_for_file(held, tmp_path / "holding-held-1", "the held tool call")
    cancelling = _admin(prefect_server, "cancel", "held-1")
    assert cancelling["cancel_requested"] is True
    (tmp_path / "release-held-1").write_text("1")
    assert harness.finish(held, "run")["status"] == "cancelled"
    assert len(harness.model_effects("held-1")) == 1  # stopped at the next step boundary

    assert harness.call("run", scenario="approval", run_id="refund-2")["status"] == "waiting"
    cancelled = _admin(prefect_server, "cancel", "refund-2")  # nobody executes a waiting run: cancelled at once
    assert (cancelled["status"], cancelled["pending"]) == ("cancelled", [])


def test_run_records_are_complete_when_run_returns(name: str, results: Path) -> None:
    counted = Counted(name, one_tool_then_text("charge"))
    counted.tool("charge")
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    for i in range(4):
        prefect_agent.run_sync("charge 42", run_id=f"at-once-{i}")
        info = prefect_agent.get_run_sync(f"at-once-{i}")  # right away: no waiting for Prefect's task-run events
        assert [(s.key, s.status, s.attempt) for s in info.steps] == [
            ("turn/1/model", "done", 1),
            ("turn/1/tool/c1", "done", 1),
            ("turn/2/model", "done", 1),
        ]
        assert info.steps[1].describe == "a call of tool 'charge'" and info.steps[0].input_tokens > 0


def test_admin_lists_every_agent_and_prunes_finished_runs(
    name: str, results: Path, prefect_server: PrefectServer
) -> None:
    import asyncio

    counted = Counted(name, one_tool_then_text("charge"))
    counted.tool("charge")
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    prefect_agent.run_sync("charge 1", run_id="old-1")
    started = prefect_agent.start_sync("charge 2", run_id="later-1")
    runs = admin(prefect_server.api_url)
    mine = PrefectAdmin(prefect_server.api_url, flow=name)  # the session's server is shared: prune this agent's

    async def main() -> tuple[list[RunInfo], int, list[RunInfo], RunInfo | None]:
        listed = await runs.list_runs(agent=name)
        pruned = await mine.prune(0)
        left = await runs.list_runs(agent=name)
        return listed, pruned, left, await runs.get_run("old-1")

    listed, pruned, left, gone = asyncio.run(main())
    assert {(i.run_id, i.status, i.agent) for i in listed} == {("old-1", "completed", name), (started, "pending", name)}
    assert pruned == 1 and [i.run_id for i in left] == [started] and gone is None
    assert not (results / names.run_folder("old-1")).exists()  # its records went with it
