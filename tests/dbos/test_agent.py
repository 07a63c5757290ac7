"""``DBOSAgent`` in one process: runs, recorded results, step order, approvals, queues, your own workflows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dbos import DBOS, SetWorkflowID
from perdure import Agent, ModelHTTPError, NonDeterminismError, RunCancelled, RunWaiting
from perdure.dbos import DBOSAgent
from perdure.messages import ModelMessage, ModelResponse, TextPart
from perdure.models.function import AgentInfo, FunctionModel

from . import agents


async def until(check: Callable[[], Awaitable[Any]]) -> Any:
    """``check()``'s first truthy value, polling (another task is getting there)."""
    for _ in range(1000):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def _pending(dbos_agent: DBOSAgent[Any, Any], run_id: str) -> list[Any]:
    return (await dbos_agent.get_run(run_id)).pending


def step_names(run_id: str) -> list[str]:
    return [s["function_name"] for s in DBOS.list_workflow_steps(run_id)]


def test_a_run_is_a_workflow_whose_id_is_the_run_id(launch: Callable[[], None]) -> None:
    agent, executed = agents.one_tool()
    dbos_agent = DBOSAgent(agent, deps="the worker")
    launch()
    result = dbos_agent.run_sync("stamp it", run_id="stamp-1", deps="the caller")
    assert result.output == "done: stamp=stamp 7 by the caller"
    assert result.run_id == "stamp-1"
    assert result.usage().requests == 2 and result.usage().tool_calls == 1
    status = DBOS.get_workflow_status("stamp-1")
    assert status is not None and status.status == "SUCCESS" and status.name == "perdure:tools"
    assert executed == ["stamp-1:stamp-1/turn/1/tool/c1"]  # ctx.idempotency_key comes from the loop unchanged


def test_the_same_run_id_returns_the_recorded_result(launch: Callable[[], None]) -> None:
    agent, requests = agents.structured()
    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    launch()
    first = dbos_agent.run_sync("book", run_id="book-1")
    again = dbos_agent.run_sync("book", run_id="book-1")
    assert first.output == agents.Booking(city="Lisbon", nights=3)
    assert again.output == first.output and isinstance(again.output, agents.Booking)  # typed, from the record
    assert [m.model_dump() for m in again.all_messages()] == [m.model_dump() for m in first.all_messages()]
    assert again.usage() == first.usage()
    assert len(requests) == 1


def test_persisted_names(launch: Callable[[], None]) -> None:
    """Workflow, step, event and topic names are compatibility data: runs in flight are found by them."""
    agent, _ = agents.one_tool("amo", side_effects="at_most_once")
    refunds, _ = agents.approval()
    dbos_agent, approvals = DBOSAgent(agent), DBOSAgent(refunds)
    launch()
    dbos_agent.run_sync("go", run_id="names-1")
    assert step_names("names-1") == ["turn/1/model", "turn/1/tool/c1/started", "turn/1/tool/c1", "turn/2/model"]
    first = DBOS.list_workflow_steps("names-1")[0]["output"]
    assert set(first) == {"d", "r"} and first["d"] == "a model request (model=scripted, tools=[stamp])"

    async def main() -> None:
        with pytest.raises(RunWaiting):
            await approvals.run("refund", run_id="names-2")
        assert await DBOS.get_event_async("names-2", "perdure.status", timeout_seconds=0) == {
            "status": "waiting",
            "pending": [
                {
                    "run_id": "names-2",
                    "tool_call_id": "r1",
                    "tool_name": "refund",
                    "args": {"cents": 4200},
                    "reason": "approval",
                    "key": "turn/1/approval/r1",
                    "since": (await approvals.get_run("names-2")).pending[0].since,
                }
            ],
        }
        await DBOS.send_async("names-2", {"approved": True, "note": None}, "turn/1/approval/r1")  # topic: the key
        assert (await approvals.wait("names-2")).output == "refund: refund=refunded 4200"

    asyncio.run(main())
    assert step_names("names-2")[:3] == ["turn/1/model", "turn/1/approval/r1", "DBOS.setEvent"]


def test_parallel_steps_take_their_positions_in_tool_call_id_order(launch: Callable[[], None]) -> None:
    agent, finished = agents.parallel()
    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    launch()
    result = dbos_agent.run_sync("work", run_id="par-1")
    assert finished == ["p3", "p2", "p1"]  # finished in the reverse order...
    steps = DBOS.list_workflow_steps("par-1")
    tools = [s["function_name"] for s in steps if "/tool/" in s["function_name"]]
    assert tools == ["turn/1/tool/p1", "turn/1/tool/p2", "turn/1/tool/p3"]  # ...recorded in a fixed order

    # Replay: a fork re-executes from the final model request; the three calls replay from their positions.
    final = next(s["function_id"] for s in steps if s["function_name"] == "turn/2/model")
    fork = DBOS.fork_workflow("par-1", final)
    assert fork.get_result(polling_interval_sec=0.05)["output"] == result.output
    assert finished == ["p3", "p2", "p1"]  # nothing ran again


def test_changed_code_is_a_non_determinism_error(launch: Callable[[], None]) -> None:
    agent, executed = agents.one_tool("changing")
    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    launch()
    dbos_agent.run_sync("go", run_id="nd-1")
    final = next(s["function_id"] for s in DBOS.list_workflow_steps("nd-1") if s["function_name"] == "turn/2/model")

    # The tool became at-most-once: at its position the run recorded the call, the code now asks for a mark.
    agent.tools["stamp"].side_effects = "at_most_once"
    fork = DBOS.fork_workflow("nd-1", final)
    with pytest.raises(NonDeterminismError) as caught:
        asyncio.run(dbos_agent.wait(fork.get_workflow_id()))
    assert caught.value.step_key == "turn/1/tool/c1"
    assert caught.value.recorded == "a call of tool 'stamp'"

    # A tool was added: the recorded model request no longer matches the one the agent makes.
    agent.tools["stamp"].side_effects = "at_least_once"

    @agent.tool_plain
    def extra() -> str:
        """An extra tool."""
        return "extra"

    fork = DBOS.fork_workflow("nd-1", final)
    with pytest.raises(NonDeterminismError) as caught:
        asyncio.run(dbos_agent.wait(fork.get_workflow_id()))
    assert caught.value.step_key == "turn/1/model"
    assert "tools=[stamp]" in caught.value.recorded and "tools=[extra, stamp]" in caught.value.requested
    assert len(executed) == 1  # nothing re-executed on a mismatch


def test_approval_then_denial_and_cancellation(launch: Callable[[], None]) -> None:
    agent, executed = agents.approval()
    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    launch()

    async def main() -> None:
        with pytest.raises(RunWaiting) as waiting:
            await dbos_agent.run("refund please", run_id="ok")
        (pending,) = waiting.value.pending
        assert (pending["tool_name"], pending["args"], pending["tool_call_id"]) == ("refund", {"cents": 4200}, "r1")
        info = await dbos_agent.get_run("ok")
        assert info.status == "waiting" and [p.tool_call_id for p in info.pending] == ["r1"]
        assert [(s.key, s.status) for s in info.steps] == [("turn/1/model", "done"), ("turn/1/approval/r1", "waiting")]
        with pytest.raises(RunWaiting):  # the same run again: still waiting, nothing starts twice
            await dbos_agent.run("refund please", run_id="ok")
        assert executed == []
        await dbos_agent.approve("ok", "r1", approved=True)
        assert (await dbos_agent.wait("ok")).output == "refund: refund=refunded 4200"
        steps = (await dbos_agent.get_run("ok")).steps
        assert [(s.key, s.status) for s in steps][1] == ("turn/1/approval/r1", "done")

        with pytest.raises(RunWaiting):
            await dbos_agent.run("refund please", run_id="no")
        await dbos_agent.approve("no", "r1", approved=False, note="not this one")
        denied = await dbos_agent.wait("no")
        assert "denied" in denied.output and "not this one" in denied.output

        with pytest.raises(RunWaiting):
            await dbos_agent.run("refund please", run_id="gone")
        await dbos_agent.cancel("gone")
        assert (await dbos_agent.get_run("gone")).status == "cancelled"
        with pytest.raises(RunCancelled):
            await dbos_agent.wait("gone")

    asyncio.run(main())
    assert executed == ["ok"]


def test_a_waiting_run_not_executing_here_is_reported_from_its_status_event(launch: Callable[[], None]) -> None:
    agent, _ = agents.approval()
    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    launch()
    with pytest.raises(RunWaiting):
        dbos_agent.run_sync("refund", run_id="remote")  # its event loop ends: the workflow stops executing here
    with pytest.raises(RunWaiting) as again:
        dbos_agent.run_sync("refund", run_id="remote")
    assert [p["tool_call_id"] for p in again.value.pending] == ["r1"]


def test_inside_your_own_workflow(launch: Callable[[], None]) -> None:
    refunds, executed = agents.approval("nested-refunds")
    greeter = DBOSAgent(agents.plain("greeter", "hi there"))
    approvals = DBOSAgent(refunds)

    @DBOS.workflow(name="tests.support_flow")
    async def support_flow(customer: str) -> str:
        greeting = await greeter.run(f"greet {customer}")
        refund = await approvals.run(f"refund {customer}")  # waits for the decision (no RunWaiting in here)
        return f"{greeting.output} / {refund.output}"

    launch()

    async def main() -> None:
        with SetWorkflowID("flow-1"):
            handle = await DBOS.start_workflow_async(support_flow, "ada")

        async def both_started() -> list[Any]:
            found: list[Any] = await DBOS.list_workflows_async(parent_workflow_id="flow-1", sort_desc=False)
            return found if len(found) == 2 else []

        children = await until(both_started)
        refund_run = children[1].workflow_id
        await until(lambda: _pending(approvals, refund_run))
        await approvals.approve(refund_run, "r1")
        assert await handle.get_result() == "hi there / refund: refund=refunded 4200"
        assert (await greeter.get_run(children[0].workflow_id)).status == "completed"
        assert [c.name for c in children] == ["perdure:greeter", "perdure:nested-refunds"]

    asyncio.run(main())
    assert len(executed) == 1


def test_start_enqueues_and_the_worker_uses_its_own_deps(launch: Callable[[], None]) -> None:
    agent, executed = agents.one_tool("queued")
    dbos_agent = DBOSAgent(agent, deps_factory=lambda run_id: f"deps of {run_id}", queue="perdure-tests")
    launch()
    DBOS.register_queue("perdure-tests", polling_interval_sec=0.05)

    async def main() -> None:
        run_id = await dbos_agent.start("stamp it", run_id="q-1")
        assert run_id == "q-1"
        assert (await dbos_agent.wait(run_id, timeout=30)).output == "done: stamp=stamp 7 by deps of q-1"
        generated = await dbos_agent.start("stamp it")
        assert (await dbos_agent.wait(generated, timeout=30)).output.startswith("done:")

    asyncio.run(main())
    assert DBOS.get_workflow_status("q-1").queue_name == "perdure-tests"  # type: ignore[union-attr]
    assert len(executed) == 2


def test_get_run_and_list_runs(launch: Callable[[], None]) -> None:
    agent, _ = agents.one_tool("inspected")

    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError("bad request", status_code=400, model_name="scripted")

    dbos_agent = DBOSAgent(agent, poll_interval=0.05)
    failing = DBOSAgent(Agent(FunctionModel(broken, model_name="scripted"), name="failing"))
    launch()
    dbos_agent.run_sync("first", run_id="i-1")
    dbos_agent.run_sync("second", run_id="i-2")
    with pytest.raises(ModelHTTPError, match="bad request"):
        failing.run_sync("boom", run_id="f-1")

    info = dbos_agent.get_run_sync("i-1")
    assert (info.status, info.prompt, info.agent, info.output) == (
        "completed",
        "first",
        "inspected",
        "done: stamp=stamp 7 by None",
    )
    assert [(s.key, s.kind, s.status) for s in info.steps] == [
        ("turn/1/model", "model", "done"),
        ("turn/1/tool/c1", "tool", "done"),
        ("turn/2/model", "model", "done"),
    ]
    for s in info.steps:
        assert s.finished_at is not None and s.finished_at >= s.started_at
    assert info.steps[0].input_tokens > 0 and info.usage.requests == 2 and info.usage.tool_calls == 1
    assert info.fingerprint == agent.fingerprint() and info.finished_at is not None
    assert info.to_json()["status"] == "completed"

    assert [r.run_id for r in dbos_agent.list_runs_sync()] == ["i-2", "i-1"]
    assert [r.run_id for r in dbos_agent.list_runs_sync(status="completed", limit=1)] == ["i-2"]
    assert dbos_agent.list_runs_sync(status="failed") == []
    (failed,) = failing.list_runs_sync(status=["failed", "cancelled"])
    assert failed.error is not None and failed.error["type"] == "ModelHTTPError"
    steps = failing.get_run_sync("f-1").steps
    assert [(s.key, s.status) for s in steps] == [("turn/1/model", "failed")]


def test_a_failed_model_request_is_recorded_not_retried(launch: Callable[[], None]) -> None:
    calls: list[int] = []

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise ModelHTTPError("unauthorized", status_code=401, model_name="scripted")
        return ModelResponse(parts=[TextPart(content="fine")])

    dbos_agent = DBOSAgent(Agent(FunctionModel(flaky, model_name="scripted"), name="flaky"))
    launch()
    with pytest.raises(ModelHTTPError):
        dbos_agent.run_sync("x", run_id="flaky-1")
    with pytest.raises(ModelHTTPError):  # the recorded failure, not a new request
        dbos_agent.run_sync("x", run_id="flaky-1")
    assert len(calls) == 1


def test_cancel_abandons_an_in_flight_model_request(launch: Callable[[], None]) -> None:
    started, abandoned = asyncio.Event(), []

    async def stuck(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        started.set()
        try:
            await asyncio.Event().wait()  # a request that never answers
        except asyncio.CancelledError:
            abandoned.append(True)
            raise
        raise AssertionError("unreachable")

    dbos_agent = DBOSAgent(Agent(FunctionModel(stuck, model_name="scripted"), name="stuck"), poll_interval=0.05)
    launch()

    async def main() -> None:
        running = asyncio.ensure_future(dbos_agent.run("hello?", run_id="stuck-1"))
        await started.wait()
        await dbos_agent.cancel("stuck-1")
        with pytest.raises(RunCancelled):
            await running
        assert (await dbos_agent.get_run("stuck-1")).status == "cancelled"

    asyncio.run(main())
    assert abandoned == [True]
