"""``perdure.dbos.admin(url)``, the run-admin port behind ``perdure runs ... --dbos URL``: it needs only the system
database URL (no agent, no launched DBOS)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from dbos import DBOS
from perdure import RunWaiting, UserError
from perdure.dbos import DBOSAgent, admin

from . import agents


def test_list_and_show_runs(launch: Callable[[], None], dbos_url: str) -> None:
    tools, _ = agents.one_tool()
    refunds, _ = agents.approval()
    first, second = DBOSAgent(tools), DBOSAgent(refunds)

    @DBOS.workflow(name="tests.not_a_run")
    async def not_a_run() -> str:
        return "the application's own workflow"

    launch()

    async def main() -> None:
        await first.run("one", run_id="a-1")
        with pytest.raises(RunWaiting):
            await second.run("two", run_id="b-1")
        await DBOS.start_workflow_async(not_a_run)

        with admin(dbos_url) as runs:
            listed = await runs.list_runs()
            assert [(r.run_id, r.agent, r.status) for r in listed] == [
                ("b-1", "refunds", "waiting"),
                ("a-1", "tools", "completed"),
            ]
            assert [r.run_id for r in await runs.list_runs(status=["completed"])] == ["a-1"]
            assert [r.run_id for r in await runs.list_runs(agent="tools")] == ["a-1"]
            assert [r.run_id for r in await runs.list_runs(limit=1)] == ["b-1"]
            assert await runs.list_runs(status=["failed"]) == []

            shown = await runs.get_run("b-1")
            assert shown is not None and shown.status == "waiting" and shown.prompt == "two"
            (pending,) = shown.pending
            assert (pending.tool_name, pending.tool_call_id, pending.args) == ("refund", "r1", {"cents": 4200})
            assert await runs.pending("b-1") == shown.pending
            assert [(s.key, s.status) for s in shown.steps] == [
                ("turn/1/model", "done"),
                ("turn/1/approval/r1", "waiting"),
            ]
            done = await runs.get_run("a-1")
            assert done is not None and done.output == "done: stamp=stamp 7 by None" and done.usage.tool_calls == 1
            assert all(s.duration is not None and s.duration >= 0 for s in done.steps)
            assert await runs.get_run("nope") is None

            await runs.decide("b-1", "r1", approved=True)
            assert (await second.wait("b-1")).output == "refund: refund=refunded 4200"
            finished = await runs.get_run("b-1")
            assert finished is not None and finished.status == "completed"

    asyncio.run(main())


def test_cancel(launch: Callable[[], None], dbos_url: str) -> None:
    refunds, executed = agents.approval()
    dbos_agent = DBOSAgent(refunds)
    launch()

    async def main() -> None:
        with pytest.raises(RunWaiting):
            await dbos_agent.run("refund", run_id="c-1")
        with admin(dbos_url) as runs:
            await runs.cancel("c-1")
            shown = await runs.get_run("c-1")
            assert shown is not None and shown.status == "cancelled" and shown.pending == []
            assert shown.error is not None and shown.error["type"] == "RunCancelled"
            with pytest.raises(UserError, match="has no call 'r1' waiting"):
                await runs.decide("c-1", "r1", approved=True)

    asyncio.run(main())
    assert executed == []


def test_unknown_runs_and_databases(launch: Callable[[], None], dbos_url: str, tmp_path: object) -> None:
    DBOSAgent(agents.plain())
    launch()

    async def main() -> None:
        with admin(dbos_url) as runs:
            assert await runs.get_run("nope") is None
            with pytest.raises(UserError, match="no perdure run 'nope'"):
                await runs.cancel("nope")
            with pytest.raises(UserError, match="no perdure run 'nope'"):
                await runs.decide("nope", "r1", approved=True)
            with pytest.raises(UserError, match="unknown run status 'stuck'"):
                await runs.list_runs(status=["stuck"])

    asyncio.run(main())


def test_from_a_process_that_registered_no_agent(launch: Callable[[], None], dbos_url: str) -> None:
    refunds, executed = agents.approval()
    dbos_agent = DBOSAgent(refunds)
    launch()
    code = (
        "import json, sys\n"
        "import asyncio\n"
        "from perdure.dbos import admin\n"
        "url, run_id = sys.argv[1:]\n"
        "async def main():\n"
        "    with admin(url) as runs:\n"
        "        (pending,) = await runs.pending(run_id)\n"
        "        await runs.decide(run_id, pending.tool_call_id, approved=True, note='fine')\n"
        "        print(json.dumps([r.status for r in await runs.list_runs()]))\n"
        "asyncio.run(main())\n"
    )

    async def main() -> None:
        with pytest.raises(RunWaiting):
            await dbos_agent.run("refund", run_id="x-1")
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code, dbos_url, "x-1"], capture_output=True, text=True, check=True
        )
        # The decision is in; this process's run takes it when its recv wakes up (at once, or a moment later).
        (status,) = json.loads(out.stdout)
        assert status in ("waiting", "running", "completed")
        assert (await dbos_agent.wait("x-1")).output == "refund: refund=refunded 4200"

    asyncio.run(main())
    assert executed == ["x-1"]


def test_a_waiting_run_being_recovered_is_still_waiting() -> None:
    """After a restart DBOS re-enqueues a pending run (ENQUEUED) before resuming it: its calls stay decidable."""
    from perdure.dbos._admin import decision_topic
    from perdure.dbos._inspect import run_status

    event = {
        "status": "waiting",
        "pending": [{"tool_call_id": "r1", "tool_name": "refund", "key": "turn/1/approval/r1"}],
    }
    assert run_status("ENQUEUED", event) == "waiting" and run_status("PENDING", event) == "waiting"
    assert run_status("ENQUEUED", None) == "pending" and run_status("PENDING", {"status": "running"}) == "running"
    assert run_status("SUCCESS", event) == "completed"
    assert decision_topic("x", "ENQUEUED", event, "r1") == "turn/1/approval/r1"
    with pytest.raises(UserError, match="has no call 'r1' waiting"):
        decision_topic("x", "CANCELLED", event, "r1")
