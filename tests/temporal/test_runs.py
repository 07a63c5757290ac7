"""Runs on a real Temporal dev server: results, errors and their classification, options, deps, approvals,
cancellation, inspection, and runs inside a user's own workflow."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import RetryPolicy

from perdure import (
    Agent,
    ModelHTTPError,
    RunCancelled,
    RunContext,
    RunWaiting,
    ToolError,
    UserError,
)
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel
from perdure.temporal import ActivityOptions, TemporalAgent

from ._devserver import DevServer
from .conftest import running_worker

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=20), maximum_attempts=3)


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


class Order(BaseModel):
    """An order."""

    order_id: int
    total_cents: int


def shop_agent(name: str, calls: list[str]) -> Agent[Any, Order]:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = returns(messages)
        if not done:
            return ModelResponse(
                parts=[
                    ToolCallPart(tool_name="price", args={"item": "book"}, tool_call_id="p1"),
                    ToolCallPart(tool_name="price", args={"item": "pen"}, tool_call_id="p2"),
                ]
            )
        total = sum(int(r.content) for r in done)
        args = {"order_id": 7, "total_cents": total}
        return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args=args, tool_call_id="o")])

    agent: Agent[Any, Order] = Agent(FunctionModel(answer, model_name="shop"), name=name, output_type=Order)

    @agent.tool_plain
    def price(item: str) -> int:
        """The price of an item, in cents."""
        calls.append(item)
        return {"book": 1200, "pen": 150}[item]

    return agent


def test_a_run_returns_its_output_and_a_finished_run_id_returns_the_recorded_result(
    temporal_server: DevServer, task_queue: str
) -> None:
    calls: list[str] = []
    ta = TemporalAgent(shop_agent("shop", calls), task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        async with running_worker(client, task_queue, ta):
            result = await ta.run("buy a book and a pen", run_id=rid)
            assert result.output == Order(order_id=7, total_cents=1350)  # rebuilt as the output type
            assert result.run_id == rid
            assert result.usage().requests == 2 and result.usage().tool_calls == 2
            assert sorted(calls) == ["book", "pen"]
            again = await ta.run("buy a book and a pen", run_id=rid)
            assert again.output == result.output and again.all_messages() == result.all_messages()
            assert sorted(calls) == ["book", "pen"]  # nothing executed again

            info = await ta.get_run(rid)
            assert info.status == "completed" and info.agent == "shop"
            assert info.output == {"order_id": 7, "total_cents": 1350}
            assert [s.key for s in info.steps] == ["turn/1/model", "turn/1/tool/p1", "turn/1/tool/p2", "turn/2/model"]
            assert info.usage.requests == 2 and info.usage.tool_calls == 2
            listed = await _eventually(lambda: ta.list_runs(status="completed"), lambda r: r)
            assert rid in [r.run_id for r in listed]
        with pytest.raises(UserError, match="is a 'perdure:shop' workflow, not a run of agent 'other'"):
            await TemporalAgent(shop_agent("other", []), client=client).resume(rid)
        with pytest.raises(UserError, match="no run 'missing'"):
            await ta.get_run("missing")

    asyncio.run(main())


async def _eventually(fetch: Any, ok: Any, timeout: float = 10) -> Any:
    """Visibility is eventually consistent: poll until ``ok(result)``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fetch()
        if ok(result) or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


def flaky_agent(name: str, failures: list[ModelHTTPError], calls: list[int]) -> Agent[None, str]:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return ModelResponse(parts=[TextPart(content="fine")])

    return Agent(FunctionModel(answer, model_name="flaky"), name=name)


def test_a_terminal_model_error_fails_the_run_at_once(temporal_server: DevServer, task_queue: str) -> None:
    calls: list[int] = []
    forever = [ModelHTTPError("invalid api key", status_code=401, model_name="flaky", transient=False)] * 5
    ta = TemporalAgent(
        flaky_agent("terminal", forever, calls),
        task_queue=task_queue,
        client=temporal_server.address,
        activity_options=ActivityOptions(retry_policy=FAST_RETRY),
    )

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        async with running_worker(client, task_queue, ta):
            with pytest.raises(ModelHTTPError, match="invalid api key") as info:
                await ta.run("hi", run_id=rid)
            assert info.value.status_code == 401 and not info.value.transient
            assert len(calls) == 1  # non-retryable: no second attempt
            run = await ta.get_run(rid)
            assert run.status == "failed"
            assert run.error is not None and run.error["type"] == "ModelHTTPError"
        history = await client.get_workflow_handle(rid).fetch_history()
        failed = [
            e.activity_task_failed_event_attributes
            for e in history.events
            if e.HasField("activity_task_failed_event_attributes")
        ]
        assert len(failed) == 1 and failed[0].failure.application_failure_info.non_retryable

    asyncio.run(main())


def test_transient_model_errors_are_retried_by_temporal_and_bounded(
    temporal_server: DevServer, task_queue: str
) -> None:
    def unavailable() -> ModelHTTPError:
        return ModelHTTPError("overloaded", status_code=503, model_name="flaky", transient=True)

    recovering: list[int] = []
    ta = TemporalAgent(
        flaky_agent("recovers", [unavailable(), unavailable()], recovering),
        task_queue=task_queue,
        client=temporal_server.address,
        activity_options=ActivityOptions(retry_policy=FAST_RETRY),
    )
    exhausted: list[int] = []
    tb = TemporalAgent(
        flaky_agent("exhausts", [unavailable() for _ in range(10)], exhausted),
        task_queue=task_queue,
        client=temporal_server.address,
        activity_options=ActivityOptions(retry_policy=FAST_RETRY),
    )

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        async with running_worker(client, task_queue, ta, tb):
            result = await ta.run("hi", run_id=run_id())
            assert result.output == "fine" and len(recovering) == 3
            with pytest.raises(ModelHTTPError, match="overloaded") as info:
                await tb.run("hi", run_id=run_id())
            assert info.value.transient and len(exhausted) == FAST_RETRY.maximum_attempts

    asyncio.run(main())


def test_a_tool_that_raises_fails_the_run_with_its_message_and_is_not_retried(
    temporal_server: DevServer, task_queue: str
) -> None:
    calls: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(tool_name="explode", args={}, tool_call_id="x")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="explodes")

    @agent.tool_plain
    def explode() -> str:
        """Explode."""
        calls.append(1)
        raise RuntimeError("the warehouse is on fire")

    ta = TemporalAgent(agent, task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        async with running_worker(client, task_queue, ta):
            with pytest.raises(ToolError, match="the warehouse is on fire"):
                await ta.run("go", run_id=run_id())
        assert calls == [1]

    asyncio.run(main())


def test_activity_options_reach_each_activity(temporal_server: DevServer, task_queue: str) -> None:
    calls: list[str] = []
    ta = TemporalAgent(
        shop_agent("options", calls),
        task_queue=task_queue,
        client=temporal_server.address,
        activity_options=ActivityOptions(start_to_close_timeout=timedelta(seconds=40)),
        model_activity_options={"shop": ActivityOptions(heartbeat_timeout=timedelta(seconds=4))},
        tool_activity_options={"price": ActivityOptions(retry_policy=RetryPolicy(maximum_attempts=2))},
    )

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        async with running_worker(client, task_queue, ta):
            await ta.run("buy", run_id=rid)
        history = await client.get_workflow_handle(rid).fetch_history()
        scheduled = {
            a.activity_id: a
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            for a in [e.activity_task_scheduled_event_attributes]
        }
        assert sorted(k.split(":")[0] for k in scheduled) == [
            "turn/1/model", "turn/1/tool/p1", "turn/1/tool/p2", "turn/2/model",
        ]  # fmt: skip
        for activity_id, attrs in scheduled.items():
            assert attrs.start_to_close_timeout.ToTimedelta() == timedelta(seconds=40)
            if "/model" in activity_id:
                assert attrs.activity_type.name == "perdure:options:model_request"
                assert attrs.heartbeat_timeout.ToTimedelta() == timedelta(seconds=4)
                assert attrs.retry_policy.maximum_attempts == ta.agent.retry_config.max_attempts
            else:
                assert attrs.activity_type.name == "perdure:options:tool_call"
                assert attrs.heartbeat_timeout.ToTimedelta() == timedelta(seconds=10)
                assert attrs.retry_policy.maximum_attempts == 2

    asyncio.run(main())


class Account(BaseModel):
    owner: str
    limit_cents: int


def test_deps_cross_into_activities_as_their_type(temporal_server: DevServer, task_queue: str) -> None:
    seen: list[Account] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not returns(messages):
            return ModelResponse(parts=[ToolCallPart(tool_name="whoami", args={}, tool_call_id="w")])
        return ModelResponse(parts=[TextPart(content=f"{info.instructions}: {returns(messages)[0].content}")])

    agent: Agent[Account, str] = Agent(FunctionModel(answer), name="deps", deps_type=Account)

    @agent.instructions
    def owner(ctx: RunContext[Account]) -> str:
        return f"for {ctx.deps.owner}"

    @agent.tool
    def whoami(ctx: RunContext[Account]) -> str:
        """Who is this."""
        seen.append(ctx.deps)
        return f"{ctx.deps.owner} may spend {ctx.deps.limit_cents}"

    ta = TemporalAgent(agent, task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        async with running_worker(client, task_queue, ta):
            result = await ta.run("who", run_id=run_id(), deps=Account(owner="ada", limit_cents=900))
        assert result.output == "for ada: ada may spend 900"
        assert seen == [Account(owner="ada", limit_cents=900)]

    asyncio.run(main())


def test_deps_that_cannot_be_serialized_fail_at_run_not_in_a_worker(temporal_server: DevServer) -> None:
    class Connection:
        pass

    agent: Agent[Any, str] = Agent(
        FunctionModel(lambda m, i: ModelResponse(parts=[])), name="bad-deps", deps_type=Connection
    )
    ta = TemporalAgent(agent, client=temporal_server.address)
    untyped = TemporalAgent(
        Agent(FunctionModel(lambda m, i: ModelResponse(parts=[])), name="untyped-deps"), client=temporal_server.address
    )

    async def main() -> None:
        with pytest.raises(UserError, match="deps of type Connection cannot cross into Temporal activities"):
            await ta.run("hi", deps=Connection())
        with pytest.raises(UserError, match=r"does not declare their type: pass Agent\(\.\.\., deps_type=Account\)"):
            await untyped.run("hi", deps=Account(owner="x", limit_cents=1))

    asyncio.run(main())


def approval_agent(name: str, refunds: list[int]) -> Agent[None, str]:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not returns(messages):
            return ModelResponse(parts=[ToolCallPart(tool_name="refund", args={"cents": 4200}, tool_call_id="r1")])
        return ModelResponse(parts=[TextPart(content=str(returns(messages)[0].content))])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name=name)

    @agent.tool_plain(requires_approval=True)
    def refund(cents: int) -> str:
        """Refund."""
        refunds.append(cents)
        return f"refunded {cents}"

    return agent


def test_approval_waits_in_the_workflow_and_a_bad_decision_is_refused(
    temporal_server: DevServer, task_queue: str
) -> None:
    refunds: list[int] = []
    ta = TemporalAgent(approval_agent("approvals", refunds), task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        async with running_worker(client, task_queue, ta):
            with pytest.raises(RunWaiting) as waiting:
                await ta.run("refund me", run_id=rid)
            (pending,) = waiting.value.pending
            assert (pending["tool_name"], pending["args"], pending["tool_call_id"]) == ("refund", {"cents": 4200}, "r1")
            info = await ta.get_run(rid)
            assert info.status == "waiting" and [p.tool_call_id for p in info.pending] == ["r1"]
            with pytest.raises(RunWaiting):
                await ta.resume(rid)
            with pytest.raises(UserError, match="has no call 'nope' waiting for a decision"):
                await ta.approve(rid, "nope")
            await ta.approve(rid, "r1", approved=True)
            result = await ta.resume(rid)
            assert result.output == "refunded 4200" and refunds == [4200]
            with pytest.raises(UserError, match="has no call 'r1' waiting"):
                await ta.approve(rid, "r1")

    asyncio.run(main())


def test_cancel_ends_the_run_cancelled(temporal_server: DevServer, task_queue: str) -> None:
    ta = TemporalAgent(approval_agent("cancels", []), task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        async with running_worker(client, task_queue, ta):
            with pytest.raises(RunWaiting):
                await ta.run("refund me", run_id=rid)
            await ta.cancel(rid)
            with pytest.raises(RunCancelled, match="was cancelled"):
                await ta.resume(rid)
            info = await ta.get_run(rid)
            assert info.status == "cancelled" and info.pending == []
            assert info.error == {"type": "RunCancelled", "message": f"run {rid!r} was cancelled"}
            await ta.cancel(rid)  # cancelling a finished run is a no-op

    asyncio.run(main())


def test_an_agent_inside_a_users_own_workflow(temporal_server: DevServer, task_queue: str) -> None:
    from ._user_workflow import SupportTicket, support

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        support.client = client  # the agent is defined before any client: it is given one to start and inspect runs
        wf_id = f"ticket-{uuid.uuid4().hex[:8]}"
        async with running_worker(client, task_queue, support, workflows=[SupportTicket]):
            handle = await client.start_workflow(
                SupportTicket.run, {"name": "Ada", "tier": "gold"}, id=wf_id, task_queue=task_queue
            )
            second = f"{wf_id}/2"
            info = await _eventually(
                lambda: support.get_run_in_workflow(wf_id, second), lambda i: i.status == "waiting"
            )
            assert [(p.tool_name, p.args) for p in info.pending] == [("refund", {"cents": 500})]
            first = await support.get_run_in_workflow(wf_id, wf_id)
            assert first.status == "completed" and first.usage.requests == 2
            await support.approve_in_workflow(wf_id, second, "r1")
            out = await handle.result()
        assert out == [
            "Helping Ada (gold). | lookup=order 42 of Ada",
            "Helping Ada (gold). | lookup=order 42 of Ada; refund=refunded 500 to Ada",
            wf_id,
            second,
        ]

    asyncio.run(main())


def test_start_returns_at_once_and_a_second_caller_attaches(temporal_server: DevServer, task_queue: str) -> None:
    refunds: list[int] = []
    ta = TemporalAgent(approval_agent("attaches", refunds), task_queue=task_queue, client=temporal_server.address)

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        rid = run_id()
        assert await ta.start("refund me", run_id=rid) == rid  # no worker yet: accepted anyway
        assert await ta.start("refund me", run_id=rid) == rid  # the same id never starts twice
        async with running_worker(client, task_queue, ta):
            with pytest.raises(RunWaiting):
                await ta.run("refund me", run_id=rid)  # attaches to the run in progress
            waiting = await _eventually(
                lambda: ta.list_runs(status="waiting"), lambda runs: rid in [r.run_id for r in runs]
            )
            (mine,) = [r for r in waiting if r.run_id == rid]
            assert mine.status == "waiting" and [p.tool_name for p in mine.pending] == ["refund"]
            assert rid not in [r.run_id for r in await ta.list_runs(status="completed")]
            await ta.approve(rid, "r1")
            first, second = await asyncio.gather(ta.resume(rid), ta.resume(rid))
        assert first.output == second.output == "refunded 4200" and refunds == [4200]
        with pytest.raises(UserError, match="unknown run status 'done'"):
            await ta.list_runs(status="done")

    asyncio.run(main())
