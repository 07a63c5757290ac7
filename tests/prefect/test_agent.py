"""``PrefectAgent`` in-process, against the session's real Prefect server.

The durable semantics across processes (crashes with SIGKILL, approvals and cancellation from other processes)
are the conformance suite's (tests/conformance, engine "prefect"); these tests cover what is Prefect's own:
runs inside the user's flow, task configuration, cache keys, Prefect's run input, inspection.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.flows import flow

from perdure import (
    Agent,
    AgentRunError,
    RunCancelled,
    RunContext,
    RunInProgress,
    RunWaiting,
    ToolError,
    UserError,
)
from perdure.messages import ModelMessage, ModelResponse
from perdure.models.function import AgentInfo, FunctionModel
from perdure.prefect import PrefectAgent, TaskConfig
from perdure.prefect._names import started_key, step_cache_key

from .agents import Counted, call, one_tool_then_text, returns, text


def agent_with_tool(name: str, tool: str = "charge", **tool_options: Any) -> Counted:
    counted = Counted(name, one_tool_then_text(tool, amount=42))
    counted.tool(tool, **tool_options)
    return counted


async def flow_run_of(prefect_agent: PrefectAgent[Any, Any], run_id: str) -> Any:
    from perdure.prefect._runs import find

    async with get_client() as client:
        return await find(client, run_id, prefect_agent.name)


def test_a_run_is_a_flow_run_named_by_its_run_id(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    result = prefect_agent.run_sync("charge 42", run_id="order-1")
    assert result.output == "done: charge=charge 42"
    assert result.usage().requests == 2 and result.usage().tool_calls == 1

    flow_run = asyncio.run(flow_run_of(prefect_agent, "order-1"))
    assert flow_run.name == "order-1"
    assert flow_run.state.is_completed()
    assert flow_run.parameters["run_id"] == "order-1" and flow_run.parameters["prompt"] == "charge 42"
    assert "perdure" in flow_run.tags

    again = prefect_agent.run_sync("charge 42", run_id="order-1")  # finished: the recorded result, nothing runs
    assert again.output == result.output
    assert again.all_messages() == result.all_messages()
    assert counted.requests == [1, 2] and counted.count("charge") == 1


def test_a_run_inside_the_users_own_flow(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))

    # (A flow without result storage makes Prefect ask the server for its default storage through a client it
    # never closes, a socket left for the GC: the user's flow names its storage, as production flows do.)
    @flow(name=f"{name}-support-pipeline", result_storage=results)
    async def support_pipeline(ticket: int) -> str:
        result = await prefect_agent.run(f"ticket {ticket}", run_id=f"ticket-{ticket}")
        return str(result.output)

    state = asyncio.run(support_pipeline(7, return_state=True))  # type: ignore[call-arg]
    assert state.is_completed()
    assert state.result() == "done: charge=charge 42"
    # The agent's run is a flow run of its own (Prefect does not suspend subflows), tagged with its caller.
    agent_run = asyncio.run(flow_run_of(prefect_agent, "ticket-7"))
    assert f"parent:{state.state_details.flow_run_id}" in agent_run.tags
    assert agent_run.state.is_completed()


def test_task_config_per_model_and_per_tool(name: str, tmp_path: Path) -> None:
    default, tool_results = tmp_path / "default", tmp_path / "tools"
    failures = {"flaky": 1}

    def flaky(ctx: RunContext[Any], amount: int) -> str:
        if failures["flaky"]:
            failures["flaky"] -= 1
            raise ConnectionError("the payment API hung up")
        return f"paid {amount}"

    counted = Counted(name, one_tool_then_text("flaky"))
    counted.tool("flaky", flaky)
    prefect_agent = PrefectAgent(
        counted.agent,
        task_config=TaskConfig(result_storage=default),
        model_task_config=TaskConfig(timeout_seconds=60),
        tool_task_config={"flaky": TaskConfig(retries=1, result_storage=tool_results)},
    )
    result = prefect_agent.run_sync("pay", run_id="pay-1")
    assert result.output == "done: flaky=paid 1"
    assert counted.count("flaky") == 2  # retried by Prefect once, as configured for this tool
    # Each kind of step persisted where its config says.
    assert (default / step_cache_key("pay-1", "turn/1/model")).exists()
    assert (tool_results / step_cache_key("pay-1", "turn/1/tool/c1")).exists()
    assert not (default / step_cache_key("pay-1", "turn/1/tool/c1")).exists()

    model_task = prefect_agent.tasks.task("model", None)
    assert (model_task.timeout_seconds, model_task.retries) == (60, 0)


def test_without_retries_a_raising_tool_fails_the_run(name: str, results: Path) -> None:
    def broken(ctx: RunContext[Any], amount: int) -> str:
        raise ConnectionError("the payment API hung up")

    counted = Counted(name, one_tool_then_text("broken"))
    counted.tool("broken", broken)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(ToolError, match="hung up"):
        prefect_agent.run_sync("pay", run_id="pay-2")
    assert counted.count("broken") == 1
    with pytest.raises(ToolError, match="hung up"):  # the recorded error, from the run's record
        prefect_agent.run_sync("pay", run_id="pay-2")
    assert counted.count("broken") == 1


def test_a_tool_past_its_timeout_fails_the_run(name: str, results: Path) -> None:
    async def slow(ctx: RunContext[Any], amount: int) -> str:
        await asyncio.sleep(30)
        return "too late"

    counted = Counted(name, one_tool_then_text("slow"))
    counted.tool("slow", slow)
    prefect_agent = PrefectAgent(
        counted.agent,
        task_config=TaskConfig(result_storage=results),
        tool_task_config={"slow": TaskConfig(timeout_seconds=0.5)},
    )
    started = time.monotonic()
    with pytest.raises(AgentRunError, match=r"(?i)timed? ?out"):
        prefect_agent.run_sync("wait", run_id="slow-1")
    assert time.monotonic() - started < 20


def test_cache_keys_depend_only_on_the_run_id_and_the_step_key(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    first = prefect_agent.run_sync("charge 42", run_id="keys-1")
    keys = ["turn/1/model", "turn/1/tool/c1", "turn/2/model"]
    stored = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert stored == sorted(step_cache_key("keys-1", k) for k in keys)

    async def forget_the_flow_run() -> None:
        flow_run = await flow_run_of(prefect_agent, "keys-1")
        async with get_client() as client:
            await client.delete_flow_run(flow_run.id)

    # A new flow run (new Prefect ids, a later time) of the same run id finds every step recorded.
    asyncio.run(forget_the_flow_run())
    second = prefect_agent.run_sync("charge 42", run_id="keys-1")
    assert second.output == first.output
    assert counted.requests == [1, 2] and counted.count("charge") == 1


def test_get_run_and_list_runs(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    counted.tool("refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    prefect_agent.run_sync("charge 42", run_id="done-1")

    def refund_script(messages: list[ModelMessage], turn: int) -> ModelResponse:
        return ModelResponse(parts=[call("refund", "r1", amount=5)]) if turn == 1 else text(returns(messages))

    refunds = Counted(name, refund_script)  # same agent name: the same flow, another script
    refunds.tool("charge")
    refunds.tool("refund", requires_approval=True)
    waiting = PrefectAgent(refunds.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(RunWaiting) as e:
        waiting.run_sync("refund 5", run_id="waiting-1")
    assert [(p["tool_name"], p["args"]) for p in e.value.pending] == [("refund", {"amount": 5})]

    # The run's own account of its steps: complete as soon as the run returned, no waiting for Prefect's events.
    info = prefect_agent.get_run_sync("done-1")
    assert info.status == "completed"
    assert info.output == "done: charge=charge 42"
    assert info.usage.requests == 2 and info.usage.tool_calls == 1
    assert [(s.key, s.kind, s.status) for s in info.steps] == [
        ("turn/1/model", "model", "done"),
        ("turn/1/tool/c1", "tool", "done"),
        ("turn/2/model", "model", "done"),
    ]
    assert info.steps[1].describe == "a call of tool 'charge'"
    assert {s.attempt for s in info.steps} == {1}
    assert info.steps[0].input_tokens > 0

    info = prefect_agent.get_run_sync("waiting-1")
    assert info.status == "waiting"
    assert [(s.key, s.status, s.attempt) for s in info.steps] == [
        ("turn/1/model", "done", 1),
        ("turn/1/approval/r1", "waiting", 0),
    ]
    assert [(p.tool_name, p.tool_call_id, p.args) for p in info.pending] == [("refund", "r1", {"amount": 5})]

    assert [i.run_id for i in prefect_agent.list_runs_sync()] == ["waiting-1", "done-1"]
    assert [i.run_id for i in prefect_agent.list_runs_sync(status="waiting")] == ["waiting-1"]
    assert [i.run_id for i in prefect_agent.list_runs_sync(status=["completed", "failed"])] == ["done-1"]
    with pytest.raises(UserError, match="no run 'nope'"):
        prefect_agent.get_run_sync("nope")


def test_parallel_approvals_suspend_once_and_resume_when_all_are_decided(name: str, results: Path) -> None:
    def script(messages: list[ModelMessage], turn: int) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[call("refund", "a", amount=1), call("refund", "b", amount=2)])
        return text(returns(messages))

    counted = Counted(name, script)
    counted.tool("refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(RunWaiting) as e:
        prefect_agent.run_sync("two refunds", run_id="two-1")
    assert sorted(p["tool_call_id"] for p in e.value.pending) == ["a", "b"]

    prefect_agent.approve_sync("two-1", "b", approved=False, note="not this one")
    info = prefect_agent.get_run_sync("two-1")
    assert (info.status, [p.tool_call_id for p in info.pending]) == ("waiting", ["a"])  # one decision missing
    with pytest.raises(UserError, match=r"no call 'b' waiting .* waiting: refund \(a\)"):
        prefect_agent.approve_sync("two-1", "b")
    prefect_agent.approve_sync("two-1", "a")
    result = prefect_agent.resume_sync("two-1")
    assert result.output.startswith("refund=refund 1; refund=The user denied this tool call")
    assert "not this one" in result.output
    assert counted.calls == [("refund", 1)]


def test_a_decision_through_prefects_own_run_input(name: str, results: Path) -> None:
    counted = agent_with_tool(name, "refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(RunWaiting):
        prefect_agent.run_sync("refund", run_id="ui-1")

    async def decide_like_prefects_ui() -> None:
        flow_run = await flow_run_of(prefect_agent, "ui-1")
        assert flow_run.state.name == "Suspended"
        async with get_client() as client:
            response = await client.resume_flow_run(flow_run.id, run_input={"call_0": {"approved": True}})
        assert response.status.value == "ACCEPT", response

    asyncio.run(decide_like_prefects_ui())
    assert prefect_agent.get_run_sync("ui-1").status == "pending"  # resumed in Prefect: ready to execute
    assert prefect_agent.resume_sync("ui-1").output == "done: refund=refund 42"
    assert counted.count("refund") == 1
    info = prefect_agent.get_run_sync("ui-1")
    assert info.attempts == 2
    assert [(s.key, s.status, s.attempt) for s in info.steps] == [
        ("turn/1/model", "done", 1),
        ("turn/1/approval/c1", "done", 2),  # decided between the executions, read by the second
        ("turn/1/tool/c1", "done", 2),
        ("turn/2/model", "done", 2),
    ]


def test_cancel_a_waiting_run(name: str, results: Path) -> None:
    counted = agent_with_tool(name, "refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(RunWaiting):
        prefect_agent.run_sync("refund", run_id="cancel-1")
    prefect_agent.cancel_sync("cancel-1")
    info = prefect_agent.get_run_sync("cancel-1")
    assert (info.status, info.pending) == ("cancelled", [])
    with pytest.raises(RunCancelled):
        prefect_agent.run_sync("refund", run_id="cancel-1")
    with pytest.raises(UserError, match="no call 'c1' waiting"):
        prefect_agent.approve_sync("cancel-1", "c1")
    assert counted.calls == []


def test_cancel_abandons_an_in_flight_model_request(name: str, results: Path) -> None:
    asked = asyncio.Event()

    async def hanging_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        asked.set()
        await asyncio.sleep(60)
        return text("too late")

    agent = Agent(FunctionModel(hanging_model), name=name)
    prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=results), poll_interval=0.2)

    async def main() -> float:
        run = asyncio.create_task(prefect_agent.run("hello", run_id="abandon-1"))
        await asyncio.wait_for(asked.wait(), 30)
        cancelled_at = time.monotonic()
        await prefect_agent.cancel("abandon-1")
        with pytest.raises(RunCancelled):
            await run
        return time.monotonic() - cancelled_at

    assert asyncio.run(main()) < 10  # the request was abandoned, not awaited for its 60 s
    assert prefect_agent.get_run_sync("abandon-1").status == "cancelled"


def test_a_started_run_is_executed_by_recover(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    assert asyncio.run(prefect_agent.start("charge 42", run_id="later-1")) == "later-1"
    assert prefect_agent.get_run_sync("later-1").status == "pending"  # accepted: a scheduled flow run
    assert counted.requests == []
    assert asyncio.run(prefect_agent.recover()) == ["later-1"]
    info = prefect_agent.get_run_sync("later-1")
    assert (info.status, info.output, info.attempts) == ("completed", "done: charge=charge 42", 1)


def test_an_interrupted_at_most_once_call_waits_for_a_human_when_asked_to(name: str, results: Path) -> None:
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.serializers import JSONSerializer

    counted = Counted(name, one_tool_then_text("transfer", amount=7, call_id="t1"))
    counted.tool("transfer", side_effects="at_most_once", on_unknown="wait")
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    # A process marked the call started, then died before its result was recorded.
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(results)), serializer=JSONSerializer())
    store.write(obj={"owner": "elsewhere:1:1"}, key=started_key("amo-1", "turn/1/tool/t1"))

    with pytest.raises(RunWaiting) as e:
        prefect_agent.run_sync("transfer 7", run_id="amo-1")
    assert [(p["tool_name"], p["reason"]) for p in e.value.pending] == [("transfer", "unknown_outcome")]
    prefect_agent.approve_sync("amo-1", "t1", approved=True)
    result = prefect_agent.resume_sync("amo-1")
    assert result.output == "done: transfer=A human confirmed that this call did happen."
    assert counted.calls == []  # never run again


def test_a_run_executing_now_is_never_executed_twice(name: str, results: Path) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: RunContext[Any], amount: int) -> str:
        holding.set()
        await release.wait()
        return "held"

    counted = Counted(name, one_tool_then_text("hold"))
    counted.tool("hold", hold)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))

    async def main() -> str:
        first = asyncio.create_task(prefect_agent.run("hold", run_id="busy-1"))
        await asyncio.wait_for(holding.wait(), 30)
        with pytest.raises(RunInProgress):
            await prefect_agent.run("hold", run_id="busy-1")
        with pytest.raises(RunInProgress):
            await prefect_agent.resume("busy-1")
        release.set()
        return str((await first).output)

    assert asyncio.run(main()) == "done: hold=held"
    assert counted.count("hold") == 1


def test_serve_executes_started_runs(name: str, results: Path) -> None:
    counted = agent_with_tool(name)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results), poll_interval=0.1)

    async def main() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(prefect_agent.serve(stop=stop))
        await prefect_agent.start("charge 42", run_id="served-1")
        while (await prefect_agent.get_run("served-1")).status != "completed":  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(worker, 10)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert counted.requests == [1, 2]


def test_deps_reach_the_tools_of_every_execution(name: str, results: Path) -> None:
    counted = Counted(name, one_tool_then_text("greet"), deps_type=str)
    counted.tool("greet", lambda ctx, amount: f"hello {ctx.deps}")
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    assert prefect_agent.run_sync("greet", run_id="deps-1", deps="Ada").output == "done: greet=hello Ada"


def test_an_agent_needs_a_name() -> None:
    counted = Counted("", one_tool_then_text("x"))
    with pytest.raises(UserError, match="needs a name"):
        PrefectAgent(counted.agent)
