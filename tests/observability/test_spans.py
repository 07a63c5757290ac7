"""Spans of plain and durable runs, in process, with the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from opentelemetry.trace import StatusCode

from perdure import AgentRunError, DurableAgent, RunWaiting, observability

from ._agents import PROMPT, approval_agent, attributes_of, lookup_agent, parallel_agent
from .conftest import Telemetry

CHAT, TOOL = "chat scripted", "execute_tool lookup"


def _traceparent(span: object) -> str:
    ctx = span.get_span_context()  # type: ignore[attr-defined]
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def test_a_plain_run_is_one_invoke_agent_span_over_its_steps(telemetry: Telemetry) -> None:
    result = lookup_agent().run_sync(PROMPT)

    assert telemetry.tree() == [("invoke_agent lookup", [(CHAT, []), (TOOL, []), (CHAT, [])])]
    spans = telemetry.spans()
    assert len({s.context.trace_id for s in spans}) == 1
    for s in spans:
        assert s.attributes is not None
        assert (s.attributes["perdure.run_id"], s.attributes["perdure.engine"], s.attributes["perdure.attempt"]) == (
            result.run_id,
            "inline",
            1,
        )

    [agent_span] = telemetry.named("invoke_agent")
    assert agent_span.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "lookup",
        "gen_ai.request.model": "scripted",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 6,
        "perdure.run_id": result.run_id,
        "perdure.engine": "inline",
        "perdure.attempt": 1,
        "perdure.run.status": "completed",
        "perdure.steps.executed": 3,
        "perdure.steps.replayed": 0,
    }
    first_chat = telemetry.named("chat")[0]
    assert first_chat.kind.name == "CLIENT"
    assert dict(first_chat.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "scripted",
        "gen_ai.response.model": "scripted",
        "gen_ai.provider.name": "function",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ("tool_call",),
        "perdure.step.key": "turn/1/model",
        "perdure.run_id": result.run_id,
        "perdure.engine": "inline",
        "perdure.attempt": 1,
    }
    [tool] = telemetry.named("execute_tool")
    assert dict(tool.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.tool.type": "function",
        "perdure.tool.side_effects": "at_least_once",
        "perdure.tool.outcome": "return",
        "perdure.step.key": "turn/1/tool/c1",
        "perdure.run_id": result.run_id,
        "perdure.engine": "inline",
        "perdure.attempt": 1,
    }


def test_a_durable_run_starts_its_trace_at_acceptance(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(lookup_agent(), journal=journal)
    durable.run_sync(PROMPT, run_id="r1")

    assert telemetry.tree() == [("accept_run lookup", [("invoke_agent lookup", [(CHAT, []), (TOOL, []), (CHAT, [])])])]
    [accept] = telemetry.named("accept_run")
    assert dict(accept.attributes or {}) == {
        "perdure.run_id": "r1",
        "perdure.engine": "local",
        "perdure.attempt": 0,
        "gen_ai.agent.name": "lookup",
    }
    assert durable.get_run_sync("r1").trace_context == {"traceparent": _traceparent(accept)}
    for s in telemetry.spans():
        assert s.attributes is not None
        assert (s.attributes["perdure.run_id"], s.attributes["perdure.engine"]) == ("r1", "local")
    [agent_span] = telemetry.named("invoke_agent")
    assert (agent_span.attributes or {})["perdure.attempt"] == 1
    assert (agent_span.attributes or {})["perdure.run.status"] == "completed"

    telemetry.exporter.clear()
    durable.run_sync(PROMPT, run_id="r1")  # finished: its result comes from the journal, nothing executes
    assert [s.name for s in telemetry.spans()] == []  # the second submission accepts nothing: no span


def test_a_durable_run_started_inside_a_span_continues_the_callers_trace(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(lookup_agent(), journal=journal)
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("POST /lookups") as request:
        durable.run_sync(PROMPT, run_id="r1")

    assert telemetry.tree() == [("POST /lookups", [("invoke_agent lookup", [(CHAT, []), (TOOL, []), (CHAT, [])])])]
    assert durable.get_run_sync("r1").trace_context == {"traceparent": _traceparent(request)}


def test_a_resumed_run_is_one_trace_and_replayed_steps_have_no_span(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(approval_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("refund order 42", run_id="r1")
    waiting_since = durable.get_run_sync("r1").pending[0].since
    durable.approve_sync("r1", "r1", approved=True)
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("worker poll") as worker:  # resumed from another trace: linked to it
        result = asyncio.run(durable.resume("r1"))
    assert result.output == "refunded"

    run_tree = [
        (
            "accept_run refunds",
            [
                ("invoke_agent refunds", [(CHAT, [])]),
                ("await_approval refund", []),
                ("invoke_agent refunds", [("execute_tool refund", []), (CHAT, [])]),
            ],
        )
    ]
    assert [t for t in telemetry.tree() if t[0] != "worker poll"] == run_tree
    [accept] = telemetry.named("accept_run")
    run_spans = [s for s in telemetry.spans() if s.name != "worker poll"]
    assert {s.context.trace_id for s in run_spans} == {accept.context.trace_id}

    first, second = telemetry.named("invoke_agent")
    assert (first.attributes or {})["perdure.attempt"] == 1
    assert (first.attributes or {})["perdure.run.status"] == "waiting"
    assert first.status.status_code == StatusCode.UNSET
    assert (second.attributes or {})["perdure.attempt"] == 2
    assert (second.attributes or {})["perdure.run.status"] == "completed"
    assert (second.attributes or {})["perdure.steps.replayed"] == 2  # turn 1's model answer and the decision
    assert (second.attributes or {})["perdure.steps.executed"] == 2
    assert [link.context.trace_id for link in second.links] == [worker.get_span_context().trace_id]

    [wait] = telemetry.named("await_approval")
    assert dict(wait.attributes or {}) == {
        "perdure.run_id": "r1",
        "perdure.engine": "local",
        "perdure.attempt": 1,
        "gen_ai.agent.name": "refunds",
        "gen_ai.tool.name": "refund",
        "gen_ai.tool.call.id": "r1",
        "perdure.wait.reason": "approval",
        "perdure.wait.outcome": "approved",
    }
    assert wait.start_time == pytest.approx(waiting_since * 1e9, abs=1e3)
    assert wait.end_time is not None and wait.start_time is not None and wait.end_time >= wait.start_time

    step_keys = [
        (s.attributes or {})["perdure.step.key"] for s in run_spans if "perdure.step.key" in (s.attributes or {})
    ]
    assert sorted(step_keys) == ["turn/1/model", "turn/1/tool/r1", "turn/2/model"]  # each step once


def test_an_attempt_starts_the_trace_of_a_run_accepted_without_tracing(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(approval_agent(), journal=journal)
    observability.configure()  # no SDK: the global no-op providers
    with pytest.raises(RunWaiting):
        durable.run_sync("refund order 42", run_id="r1")
    assert durable.get_run_sync("r1").trace_context is None

    telemetry.configure()
    durable.approve_sync("r1", "r1", approved=False, note="not without a receipt")
    asyncio.run(durable.resume("r1"))
    [attempt] = telemetry.named("invoke_agent")
    assert (attempt.attributes or {})["perdure.attempt"] == 2
    assert durable.get_run_sync("r1").trace_context == {"traceparent": _traceparent(attempt)}


def test_no_prompt_message_argument_result_or_output_on_spans_by_default(telemetry: Telemetry, journal: str) -> None:
    lookup_agent().run_sync(PROMPT)
    DurableAgent(lookup_agent(), journal=journal).run_sync(PROMPT, run_id="r1")
    durable = DurableAgent(approval_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("SECRET-PROMPT refund", run_id="r2")
    durable.approve_sync("r2", "r1", approved=False, note="SECRET-NOTE")

    values = attributes_of(telemetry.spans())
    assert len(telemetry.spans()) == 13
    assert not [v for v in values if "SECRET" in str(v)]
    # The refund's amount (a random run id may hold "42" too: those are ids, not content).
    assert not [v for v in values if "42" in str(v) and not re.fullmatch(r"[0-9a-f]{32}", str(v))]


def test_include_content_puts_prompts_messages_arguments_results_and_outputs_on_spans(
    telemetry: Telemetry, journal: str
) -> None:
    telemetry.configure(include_content=True)
    DurableAgent(lookup_agent(), journal=journal).run_sync(PROMPT, run_id="r1")

    [agent_span] = telemetry.named("invoke_agent")
    assert (agent_span.attributes or {})["perdure.run.prompt"] == PROMPT
    assert (agent_span.attributes or {})["perdure.run.output"] == '"SECRET-OUTPUT"'
    first, second = telemetry.named("chat")
    sent = json.loads(str((first.attributes or {})["gen_ai.input.messages"]))
    assert sent[0]["parts"][-1]["content"] == PROMPT
    answered = json.loads(str((first.attributes or {})["gen_ai.output.messages"]))
    assert answered[0]["parts"][0]["args"] == {"code": "SECRET-ARG"}
    assert "SECRET-OUTPUT" in str((second.attributes or {})["gen_ai.output.messages"])
    [tool] = telemetry.named("execute_tool")
    assert json.loads(str((tool.attributes or {})["gen_ai.tool.call.arguments"])) == {"code": "SECRET-ARG"}
    assert json.loads(str((tool.attributes or {})["gen_ai.tool.call.result"])) == "SECRET-RESULT for SECRET-ARG"


def test_include_content_for_one_agent(telemetry: Telemetry, journal: str) -> None:
    talkative, discreet = lookup_agent(name="talkative"), lookup_agent(name="discreet")
    observability.configure_agent(DurableAgent(talkative, journal=journal), include_content=True)
    talkative.run_sync(PROMPT)
    discreet.run_sync(PROMPT)

    by_agent: dict[str, list[object]] = {}
    runs = {s.context.trace_id: str((s.attributes or {})["gen_ai.agent.name"]) for s in telemetry.named("invoke_agent")}
    for s in telemetry.spans():  # step spans leave the agent's name to their invoke_agent span
        by_agent.setdefault(runs[s.context.trace_id], []).extend(attributes_of([s]))
    assert [v for v in by_agent["talkative"] if "SECRET" in str(v)]
    assert not [v for v in by_agent["discreet"] if "SECRET" in str(v)]

    observability.configure_agent(talkative, include_content=None)
    telemetry.exporter.clear()
    talkative.run_sync(PROMPT)
    assert not [v for v in attributes_of(telemetry.spans()) if "SECRET" in str(v)]


def test_include_content_follows_the_genai_environment_variable(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    observability.configure(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    lookup_agent().run_sync(PROMPT)
    assert [v for v in attributes_of(telemetry.spans()) if "SECRET" in str(v)]


def test_a_failing_tool_fails_its_span_and_the_attempt(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(lookup_agent(tool_raises=True), journal=journal)
    with pytest.raises(AgentRunError, match="lookup service is down"):
        durable.run_sync(PROMPT, run_id="r1")

    [tool] = telemetry.named("execute_tool")
    assert tool.status.status_code == StatusCode.ERROR
    assert (tool.attributes or {})["error.type"] == "ValueError"
    assert (tool.attributes or {})["perdure.tool.outcome"] == "error"
    assert [e.name for e in tool.events] == ["exception"]
    [attempt] = telemetry.named("invoke_agent")
    assert attempt.status.status_code == StatusCode.ERROR
    assert (attempt.attributes or {})["perdure.run.status"] == "failed"
    assert (attempt.attributes or {})["error.type"] == "ToolError"


def test_transient_model_errors_are_retry_events_of_one_chat_span(telemetry: Telemetry) -> None:
    lookup_agent(fail_first=2).run_sync(PROMPT)

    first = telemetry.named("chat")[0]
    assert [(e.name, dict(e.attributes or {})) for e in first.events] == [
        ("retry", {"error.type": "503", "http.response.status_code": 503, "perdure.retry.attempt": 1}),
        ("retry", {"error.type": "503", "http.response.status_code": 503, "perdure.retry.attempt": 2}),
    ]
    assert (first.attributes or {})["perdure.model.retries"] == 2
    assert first.status.status_code == StatusCode.UNSET
    assert len(telemetry.named("chat")) == 2


def test_parallel_tool_calls_are_sibling_spans(telemetry: Telemetry, journal: str) -> None:
    DurableAgent(parallel_agent(), journal=journal).run_sync("go", run_id="r1")

    [(_, [(_, attempt_children)])] = telemetry.tree()
    assert sorted(name for name, _ in attempt_children) == [CHAT, CHAT, "execute_tool a", "execute_tool b"]
    tools = {str((s.attributes or {})["gen_ai.tool.call.id"]): s for s in telemetry.named("execute_tool")}
    assert sorted(tools) == ["p1", "p2"]
    assert (tools["p1"].attributes or {})["perdure.tool.outcome"] == "return"
    assert (tools["p2"].attributes or {})["perdure.tool.outcome"] == "retry"
    assert all(s.status.status_code == StatusCode.UNSET for s in tools.values())
    [attempt] = telemetry.named("invoke_agent")
    assert all(s.parent is not None and s.parent.span_id == attempt.context.span_id for s in tools.values())


def test_a_cancelled_waiting_run_ends_its_wait_span(telemetry: Telemetry, journal: str) -> None:
    durable = DurableAgent(approval_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("refund order 42", run_id="r1")
    durable.cancel_sync("r1")
    durable.cancel_sync("r1")  # already over: no second span

    [wait] = telemetry.named("await_approval")
    assert (wait.attributes or {})["perdure.wait.outcome"] == "cancelled"


def test_a_streamed_run_has_the_same_span_tree(telemetry: Telemetry) -> None:
    async def main() -> str:
        async with lookup_agent().run_stream(PROMPT) as stream:
            async for _ in stream.stream_text(delta=True):
                pass
            return stream.output

    asyncio.run(main())
    assert telemetry.tree() == [("invoke_agent lookup", [(CHAT, []), (TOOL, []), (CHAT, [])])]
    [agent_span] = telemetry.named("invoke_agent")
    assert (agent_span.attributes or {})["perdure.run.status"] == "completed"
