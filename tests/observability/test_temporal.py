"""Temporal's attempts, waits and metrics, in process: a worker on the session's dev server, the SDK in memory.

Workflow code reports only what runs live: the spans a worker emits while it replays a history are not emitted
again, and every step's span (emitted in an activity) is a child of the attempt that scheduled it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import Client  # a dev dependency: missing, these tests fail loudly rather than skip
from temporalio.worker import Worker

from perdure import RunCancelled, RunWaiting
from perdure.temporal import PerdurePlugin, TemporalAgent

from ..temporal._devserver import DevServer, dev_server
from ._agents import approval_agent
from .conftest import Telemetry

CHAT = "chat scripted"


@pytest.fixture
def server(pytestconfig: pytest.Config) -> DevServer:
    return dev_server(pytestconfig)


@asynccontextmanager
async def worker(server: DevServer, agent: TemporalAgent[Any, Any]) -> AsyncIterator[Client]:
    client = await Client.connect(server.address, namespace=server.namespace)
    agent.client = client
    async with Worker(client, task_queue=agent.task_queue, plugins=[PerdurePlugin(agent)]):
        yield client


def temporal_agent() -> TemporalAgent[None, str]:
    return TemporalAgent(approval_agent(), task_queue=f"obs-{uuid.uuid4().hex[:12]}")


def test_an_approval_splits_a_run_into_two_attempts_of_one_trace(telemetry: Telemetry, server: DevServer) -> None:
    agent = temporal_agent()
    run_id = f"obs-{uuid.uuid4().hex[:12]}"

    async def main() -> str:
        async with worker(server, agent):
            with pytest.raises(RunWaiting):
                await agent.run("refund order 42", run_id=run_id)
            with pytest.raises(RunWaiting):  # the same run submitted again: nothing accepted, no span
                await agent.run("refund order 42", run_id=run_id)
            await agent.approve(run_id, "r1")
            result = await agent.resume(run_id)
        return str(result.output)

    assert asyncio.run(main()) == "refunded"

    # As on the embedded engine: the wait ends the first attempt, the decision starts the second.
    assert telemetry.tree() == [
        (
            "accept_run refunds",
            [
                ("invoke_agent refunds", [(CHAT, [])]),
                ("await_approval refund", []),
                ("invoke_agent refunds", [("execute_tool refund", []), (CHAT, [])]),
            ],
        )
    ]
    spans = telemetry.spans()
    assert len({s.context.trace_id for s in spans}) == 1
    assert {(s.attributes or {})["perdure.engine"] for s in spans} == {"temporal"}
    assert {(s.attributes or {})["perdure.run_id"] for s in spans} == {run_id}
    first, second = telemetry.named("invoke_agent")
    assert [
        {k: (s.attributes or {})[k] for k in ("perdure.attempt", "perdure.run.status", "perdure.steps.executed")}
        for s in (first, second)
    ] == [
        {"perdure.attempt": 1, "perdure.run.status": "waiting", "perdure.steps.executed": 1},
        {"perdure.attempt": 2, "perdure.run.status": "completed", "perdure.steps.executed": 2},
    ]
    [wait] = telemetry.named("await_approval")
    assert (wait.attributes or {})["perdure.attempt"] == 1
    assert (wait.attributes or {})["perdure.wait.outcome"] == "approved"
    steps = [s.attributes for s in spans if s.attributes and "perdure.step.key" in s.attributes]
    assert {a["perdure.step.key"]: a["perdure.attempt"] for a in steps} == {
        "turn/1/model": 1,
        "turn/1/tool/r1": 2,
        "turn/2/model": 2,
    }

    temporal = {"perdure.engine": "temporal", "gen_ai.agent.name": "refunds"}
    assert telemetry.total("perdure.runs", perdure__run__status="started", **_kw(temporal)) == 1
    assert telemetry.total("perdure.runs", perdure__run__status="completed", **_kw(temporal)) == 1
    assert telemetry.total("perdure.run.attempts", **_kw(temporal)) == 2
    assert telemetry.total("perdure.approvals.waiting", **_kw(temporal)) == 0
    assert telemetry.total("perdure.step.duration", perdure__step__kind="model", **_kw(temporal)) == 2
    assert telemetry.total("perdure.step.duration", perdure__step__kind="tool", **_kw(temporal)) == 1


def test_a_run_cancelled_while_it_waits(telemetry: Telemetry, server: DevServer) -> None:
    agent = temporal_agent()
    run_id = f"obs-{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        async with worker(server, agent):
            with pytest.raises(RunWaiting):
                await agent.run("refund order 42", run_id=run_id)
            await agent.cancel(run_id)
            with pytest.raises(RunCancelled):
                await agent.resume(run_id)

    asyncio.run(main())
    [wait] = telemetry.named("await_approval")
    assert (wait.attributes or {})["perdure.wait.outcome"] == "cancelled"
    statuses = [(s.attributes or {})["perdure.run.status"] for s in telemetry.named("invoke_agent")]
    assert statuses == ["waiting", "cancelled"]  # the worker that applied the cancellation ended the run
    assert telemetry.total("perdure.runs", perdure__run__status="cancelled", perdure__engine="temporal") == 1
    assert telemetry.total("perdure.approvals.waiting", perdure__engine="temporal") == 0


def _kw(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k.replace(".", "__"): v for k, v in attributes.items()}


def test_runs_inside_a_users_workflow_are_one_trace_each(telemetry: Telemetry, server: DevServer) -> None:
    from ..temporal._user_workflow import SupportTicket, support

    queue = f"obs-{uuid.uuid4().hex[:12]}"
    wf_id = f"ticket-{uuid.uuid4().hex[:8]}"

    async def main() -> list[str]:
        client = await Client.connect(server.address, namespace=server.namespace)
        plugin = PerdurePlugin(support)
        async with Worker(client, task_queue=queue, plugins=[plugin], workflows=[SupportTicket]):
            handle = await client.start_workflow(
                SupportTicket.run, {"name": "Ada", "tier": "gold"}, id=wf_id, task_queue=queue
            )
            for _ in range(200):  # the second run waits for a human
                if len(telemetry.named("invoke_agent")) == 2:
                    break
                await asyncio.sleep(0.05)
            support.client = client
            await support.approve_in_workflow(wf_id, f"{wf_id}/2", "r1")
            out: list[str] = await handle.result()
        return out

    assert asyncio.run(main())[2:] == [wf_id, f"{wf_id}/2"]
    runs: dict[str, list[Any]] = {}
    for s in telemetry.spans():
        runs.setdefault(str((s.attributes or {})["perdure.run_id"]), []).append(s)
    assert sorted(runs) == [wf_id, f"{wf_id}/2"]
    for spans in runs.values():  # no trace was recorded for them: one derived from the ids, shared by every attempt
        assert len({s.context.trace_id for s in spans}) == 1
    assert runs[wf_id][0].context.trace_id != runs[f"{wf_id}/2"][0].context.trace_id
    attempts = [
        (
            (s.attributes or {})["perdure.run_id"],
            (s.attributes or {})["perdure.attempt"],
            (s.attributes or {})["perdure.run.status"],
        )
        for s in telemetry.named("invoke_agent")
    ]
    assert attempts == [(wf_id, 1, "completed"), (f"{wf_id}/2", 1, "waiting"), (f"{wf_id}/2", 2, "completed")]
    assert telemetry.total("perdure.runs", perdure__run__status="started", perdure__engine="temporal") == 2
    assert telemetry.total("perdure.runs", perdure__run__status="completed", perdure__engine="temporal") == 2
