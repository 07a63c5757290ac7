"""Run and step metrics, read with the OpenTelemetry SDK's in-memory metric reader."""

from __future__ import annotations

import asyncio

import pytest

from perdure import AgentRunError, DurableAgent, RunWaiting

from ._agents import PROMPT, approval_agent, lookup_agent
from .conftest import Telemetry


def test_a_durable_run_through_an_approval(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(approval_agent(), journal=journal)
    local = {"perdure.engine": "local", "gen_ai.agent.name": "refunds"}

    with pytest.raises(RunWaiting):
        durable.run_sync("refund order 42", run_id="r1")
    assert telemetry.points("perdure.runs") == [({**local, "perdure.run.status": "started"}, 1)]
    assert telemetry.points("perdure.approvals.waiting") == [(local, 1)]
    assert telemetry.points("perdure.run.attempts") == [(local, 1)]

    durable.approve_sync("r1", "r1", approved=True)
    assert telemetry.points("perdure.approvals.waiting") == [(local, 0)]

    asyncio.run(durable.resume("r1"))
    assert sorted(telemetry.points("perdure.runs"), key=str) == [
        ({**local, "perdure.run.status": "completed"}, 1),
        ({**local, "perdure.run.status": "started"}, 1),
    ]
    assert telemetry.points("perdure.run.attempts") == [(local, 2)]
    # Executed steps only: turn 1's model request ran in attempt 1 and was replayed (not timed) in attempt 2.
    assert sorted(telemetry.points("perdure.step.duration"), key=str) == [
        ({**local, "perdure.step.kind": "model"}, 2),
        ({**local, "perdure.step.kind": "tool"}, 1),
    ]


def test_failed_and_cancelled_runs_are_counted(telemetry: Telemetry, journal: str) -> None:
    with pytest.raises(AgentRunError):
        DurableAgent(lookup_agent(tool_raises=True), journal=journal).run_sync(PROMPT, run_id="fails")
    durable = DurableAgent(approval_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("refund order 42", run_id="cancelled")
    durable.cancel_sync("cancelled")
    pending = asyncio.run(durable.start("never picked up"))
    durable.cancel_sync(pending)

    assert telemetry.total("perdure.runs", perdure__run__status="failed", gen_ai__agent__name="lookup") == 1
    assert telemetry.total("perdure.runs", perdure__run__status="cancelled", gen_ai__agent__name="refunds") == 2
    assert telemetry.total("perdure.runs", perdure__run__status="started") == 3
    assert telemetry.total("perdure.approvals.waiting") == 0
    assert telemetry.total("perdure.step.duration", perdure__step__kind="tool", error__type="ValueError") == 1


def test_model_retries_tokens_and_plain_runs(telemetry: Telemetry) -> None:
    lookup_agent(fail_first=2).run_sync(PROMPT)

    inline = {"perdure.engine": "inline", "gen_ai.agent.name": "lookup"}
    assert telemetry.points("perdure.model.retries") == [
        (
            {
                **inline,
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "function",
                "gen_ai.request.model": "scripted",
                "error.type": "503",
            },
            2,
        )
    ]
    assert telemetry.total("perdure.runs", perdure__run__status="started", **{"perdure__engine": "inline"}) == 1
    assert telemetry.total("perdure.runs", perdure__run__status="completed") == 1
    assert telemetry.total("perdure.step.duration", perdure__step__kind="model") == 2  # one per step, not per try
    assert telemetry.total("gen_ai.client.token.usage", gen_ai__token__type="input") == 2


def test_token_usage_sums(telemetry: Telemetry) -> None:
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    lookup_agent().run_sync(PROMPT)
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    points = [
        (dict(p.attributes or {}), p)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "gen_ai.client.token.usage"
        for p in m.data.data_points
        if isinstance(p, HistogramDataPoint)
    ]
    assert {attributes["gen_ai.token.type"]: p.sum for attributes, p in points} == {"input": 30, "output": 6}
    # The semantic convention's attributes, no more: every attribute costs on every point of every request.
    assert [attributes for attributes, _ in points] == [
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "function",
            "gen_ai.request.model": "scripted",
            "gen_ai.response.model": "scripted",
            "gen_ai.token.type": token_type,
        }
        for token_type in ("input", "output")
    ]


def test_step_measurements_carry_no_exemplars(telemetry: Telemetry) -> None:
    """They are taken outside any span: exemplars would cost nearly as much as the points (the spans have it all)."""
    from opentelemetry.sdk.metrics.export import HistogramDataPoint

    lookup_agent(fail_first=1).run_sync(PROMPT)
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    points = [
        (m.name, p)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
        if m.name in ("perdure.step.duration", "gen_ai.client.token.usage", "perdure.model.retries")
    ]
    assert {name for name, _ in points} == {
        "perdure.step.duration",
        "gen_ai.client.token.usage",
        "perdure.model.retries",
    }
    assert all(not p.exemplars for _, p in points)
    assert any(isinstance(p, HistogramDataPoint) for _, p in points)
