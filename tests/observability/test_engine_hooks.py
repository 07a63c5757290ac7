"""The hooks an engine adapter adopts (``perdure.observability.engine``), used the way an adapter would."""

from __future__ import annotations

import asyncio
from typing import Any

from perdure._engine import perform_model_step, perform_tool_step
from perdure._loop import RunInput, drive
from perdure._ops import ModelStep, Step, StepResult, ToolStep
from perdure.observability.engine import (
    accept_trace_context,
    attempt_context,
    current_attempt,
    run_attempt,
)

from ._agents import PROMPT, lookup_agent
from .conftest import Telemetry


def test_an_adapter_wraps_each_attempt_and_gets_step_spans_from_the_shared_step_functions(telemetry: Telemetry) -> None:
    agent = lookup_agent()
    model = agent.resolve_model()
    carrier = accept_trace_context(agent_name=agent.name, run_id="a1", engine="myengine")
    recorded: dict[str, StepResult] = {}

    async def attempt(n: int, crash_after: int | None) -> None:
        replayed = 0

        async def execute(step: Step) -> StepResult:
            nonlocal replayed
            if step.key in recorded:  # the engine's own replay: no perform_* call, so no span
                replayed += 1
                return recorded[step.key]
            if crash_after is not None and len(recorded) == crash_after:
                raise asyncio.CancelledError  # the worker goes away: the run is resumed later
            if isinstance(step, ModelStep):
                result: StepResult = await perform_model_step(model, step, agent.retry_config)
            else:
                assert isinstance(step, ToolStep)
                result = await perform_tool_step(agent, step, deps=None, run_id="a1", prompt=PROMPT)
            recorded[step.key] = result
            return result

        run = RunInput(prompt=PROMPT, run_id="a1")
        with run_attempt(
            agent, run_id="a1", engine="myengine", attempt=n, trace_context=carrier, model=model.model_name
        ) as obs:
            assert current_attempt() is obs
            try:
                obs.set_result(await drive(agent.new_loop(run, None, model), execute))
            finally:
                obs.replayed_steps = replayed

    try:
        asyncio.run(attempt(1, crash_after=2))
    except asyncio.CancelledError:
        pass
    asyncio.run(attempt(2, crash_after=None))

    chat, tool = "chat scripted", "execute_tool lookup"
    assert telemetry.tree() == [
        (
            "accept_run lookup",
            [("invoke_agent lookup", [(chat, []), (tool, [])]), ("invoke_agent lookup", [(chat, [])])],
        )
    ]
    first, second = telemetry.named("invoke_agent")
    assert {k: v for k, v in (first.attributes or {}).items() if k.startswith("perdure.")} == {
        "perdure.run_id": "a1",
        "perdure.engine": "myengine",
        "perdure.attempt": 1,
        "perdure.run.status": "interrupted",
        "perdure.steps.replayed": 0,
        "perdure.steps.executed": 2,
    }
    assert (second.attributes or {})["perdure.steps.replayed"] == 2
    assert (second.attributes or {})["perdure.run.status"] == "completed"
    assert telemetry.total("perdure.runs", perdure__run__status="started", perdure__engine="myengine") == 1
    assert telemetry.total("perdure.runs", perdure__run__status="completed", perdure__engine="myengine") == 1
    assert telemetry.total("perdure.run.attempts", perdure__engine="myengine") == 2


def test_a_step_executed_away_from_its_attempt_joins_the_attempts_trace(telemetry: Telemetry) -> None:
    """A Temporal-style activity: the attempt's span lives in the workflow; the step runs on a worker."""
    agent = lookup_agent()
    with run_attempt(agent, run_id="t1", engine="temporal", attempt=3) as obs:
        shipped: Any = obs.trace_context  # travels with the activity's input

    step = ToolStep(
        key="turn/1/tool/c1",
        turn=1,
        tool_name="lookup",
        args={"code": "x"},
        tool_call_id="c1",
        side_effects="at_least_once",
        idempotency_key="t1:turn/1/tool/c1",
    )

    async def activity() -> None:
        with attempt_context(agent, run_id="t1", engine="temporal", attempt=3, trace_context=shipped):
            await perform_tool_step(agent, step, deps=None, run_id="t1")

    asyncio.run(activity())
    assert telemetry.tree() == [("invoke_agent lookup", [("execute_tool lookup", [])])]
    [tool] = telemetry.named("execute_tool")
    assert (tool.attributes or {})["perdure.attempt"] == 3
    assert (tool.attributes or {})["perdure.engine"] == "temporal"
    assert current_attempt() is None
