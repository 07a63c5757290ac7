"""The method set every durable agent has, as Temporal does it (sync twins, ``wait`` through decisions,
``recover``, ``start_workflow`` with deps), and ``perdure.temporal.admin``: runs operated with no agent at hand."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.client import Client

import perdure.temporal
from perdure import Agent, RunContext, RunWaiting, UserError
from perdure.durable.base import DurableAgentBase
from perdure.durable.ports import RunAdmin
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel
from perdure.temporal import TemporalAgent

from ._devserver import DevServer
from .conftest import running_worker
from .test_runs import approval_agent


def test_the_shared_methods_have_the_base_signatures() -> None:
    shared = [n for n in dir(DurableAgentBase) if not n.startswith("_")]
    assert {"run", "run_sync", "wait", "wait_sync", "recover_sync", "list_runs_sync"} <= set(shared)
    for name in shared:
        assert inspect.signature(getattr(TemporalAgent, name)) == inspect.signature(getattr(DurableAgentBase, name))


@contextlib.contextmanager
def worker_thread(address: str, task_queue: str, *agents: TemporalAgent[Any, Any]) -> Iterator[None]:
    """A worker on its own event loop in a thread, so that the test can call the ``*_sync`` methods."""
    ready, stop = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def serve() -> None:
        client = await Client.connect(address)
        async with running_worker(client, task_queue, *agents):
            ready.set()
            await asyncio.to_thread(stop.wait)

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as e:  # pragma: no cover - reported below
            failed.append(e)
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(60) and not failed, failed
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def test_sync_twins_and_wait_through_a_decision(temporal_server: DevServer, task_queue: str) -> None:
    refunds: list[int] = []
    ta = TemporalAgent(approval_agent("sync-twins", refunds), client=temporal_server.address, task_queue=task_queue)
    rid = f"sync-{uuid.uuid4().hex[:8]}"
    with worker_thread(temporal_server.address, task_queue, ta):
        assert ta.start_sync("refund me", run_id=rid) == rid
        with pytest.raises(TimeoutError, match="has not ended"):
            ta.wait_sync(rid, timeout=0.5)  # it waits for a human: it cannot end
        with pytest.raises(RunWaiting):
            ta.resume_sync(rid)
        assert [p.tool_call_id for p in ta.get_run_sync(rid).pending] == ["r1"]
        ta.approve_sync(rid, "r1")
        assert ta.wait_sync(rid, timeout=60).output == "refunded 4200"
        assert ta.run_sync("refund me", run_id=rid).output == "refunded 4200"  # the recorded result
        assert rid in [r.run_id for r in _eventually_sync(lambda: ta.list_runs_sync(status="completed"), rid)]
    assert refunds == [4200]


def _eventually_sync(fetch: Any, rid: str) -> Any:
    for _ in range(200):  # visibility is eventually consistent
        runs = fetch()
        if rid in [r.run_id for r in runs]:
            return runs
        threading.Event().wait(0.05)
    return fetch()


class Shop(BaseModel):
    name: str


def usage_agent(name: str, seen: list[tuple[str, int, str]]) -> Agent[Shop, str]:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if not done:
            return ModelResponse(parts=[ToolCallPart(tool_name="look", args={}, tool_call_id="u1")])
        return ModelResponse(parts=[TextPart(content=str(done[0].content))])

    agent: Agent[Shop, str] = Agent(FunctionModel(answer, model_name="usage-model"), name=name, deps_type=Shop)

    @agent.tool
    def look(ctx: RunContext[Shop]) -> str:
        """Look."""
        seen.append((ctx.deps.name, ctx.usage.requests, ctx.model_name))
        return f"seen in {ctx.deps.name}"

    return agent


def test_start_workflow_takes_deps_and_recover_waits_for_started_runs(
    temporal_server: DevServer, task_queue: str
) -> None:
    seen: list[tuple[str, int, str]] = []
    ta = TemporalAgent(usage_agent("started", seen), client=temporal_server.address, task_queue=task_queue)

    async def main() -> None:
        rid = f"started-{uuid.uuid4().hex[:8]}"
        # No worker polls the agent's queue yet: the run waits there, accepted.
        assert await ta.start_workflow("look", run_id=rid, deps=Shop(name="north")) == rid
        client = await Client.connect(temporal_server.address)
        async with running_worker(client, task_queue, ta):
            recovered = await _eventually(ta.recover, lambda ids: rid in ids)
            assert rid in recovered
            result = await ta.resume(rid)
        assert result.output == "seen in north"
        assert seen == [("north", 1, "usage-model")]  # the tool sees the run's usage and model

    asyncio.run(main())


async def _eventually(fetch: Any, ok: Any) -> Any:
    for _ in range(200):  # visibility is eventually consistent
        value = await fetch()
        if ok(value):
            return value
        await asyncio.sleep(0.05)
    return await fetch()


def test_admin_operates_runs_without_an_agent(temporal_server: DevServer, task_queue: str) -> None:
    refunds: list[int] = []
    name = f"admin-{uuid.uuid4().hex[:6]}"
    ta = TemporalAgent(approval_agent(name, refunds), client=temporal_server.address, task_queue=task_queue)
    admin = perdure.temporal.admin(temporal_server.address, temporal_server.namespace)
    assert isinstance(admin, RunAdmin) and admin.engine == "temporal"
    waiting, cancelled = f"{name}-w", f"{name}-c"

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        async with running_worker(client, task_queue, ta):
            for rid in (waiting, cancelled):
                with pytest.raises(RunWaiting):
                    await ta.run("refund me", run_id=rid)
            info = await admin.get_run(waiting)
            assert info is not None and info.agent == name and info.status == "waiting"
            assert [p.tool_call_id for p in await admin.pending(waiting)] == ["r1"]
            listed = await _eventually(
                lambda: admin.list_runs(agent=name, status=["waiting"]), lambda runs: len(runs) == 2
            )
            assert sorted(r.run_id for r in listed) == [cancelled, waiting]
            assert await admin.list_runs(agent=name, status=["pending"]) == []  # Temporal has no pending runs
            with pytest.raises(UserError, match="has no call 'nope' waiting"):
                await admin.decide(waiting, "nope", approved=True)
            await admin.decide(waiting, "r1", approved=True, note="fine")
            await admin.cancel(cancelled)
            assert (await ta.wait(waiting, timeout=60)).output == "refunded 4200"
        assert await admin.get_run("no-such-run") is None
        done = await _eventually(lambda: admin.list_runs(agent=name), lambda runs: len(runs) == 2)
        assert {r.run_id: r.status for r in done} == {waiting: "completed", cancelled: "cancelled"}
        # A run no worker picks up (its queue has none) and that made no progress: stuck.
        stuck_id = f"{name}-s"
        await TemporalAgent(approval_agent(name, []), client=client, task_queue=f"{task_queue}-none").start(
            "refund me", run_id=stuck_id
        )
        stuck = await _eventually(lambda: admin.stuck(0), lambda runs: stuck_id in [r.run_id for r in runs])
        assert stuck_id in [r.run_id for r in stuck]
        await client.get_workflow_handle(stuck_id).terminate("test over")
        # Prune: the finished runs of this agent (never a running one), through the server's
        # DeleteWorkflowExecution; the server deletes them at its own pace.
        scoped = perdure.temporal.TemporalAdmin(client, agent=name, query_deadlines=(0.5,))  # no worker now
        open_id = f"{name}-o"
        await ta.start("refund me", run_id=open_id)
        counts = [await scoped.prune(0)]
        while counts[-1] < 3 and len(counts) < 200:  # visibility lists closed runs a little after they close
            await asyncio.sleep(0.05)
            counts.append(await scoped.prune(0))
        assert counts[-1] == 3 and max(counts) == 3  # completed, cancelled, terminated: not the open run
        assert (await scoped.get_run(open_id)).status == "running"  # type: ignore[union-attr]
        await client.get_workflow_handle(open_id).terminate("test over")

    asyncio.run(main())
    assert refunds == [4200]
