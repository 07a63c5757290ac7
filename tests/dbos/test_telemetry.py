"""A DBOS run reports like any perdure run: an ``invoke_agent`` span per attempt, step spans inside it."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from perdure import observability
from perdure.dbos import DBOSAgent

from . import agents


def test_a_run_is_one_trace_with_its_steps(launch: Callable[[], None]) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.configure(tracer_provider=provider)
    try:
        agent, _ = agents.one_tool("traced")
        dbos_agent = DBOSAgent(agent)
        launch()
        dbos_agent.run_sync("go", run_id="t-1")
        dbos_agent.run_sync("go", run_id="t-1")  # the recorded result: no attempt, no span
    finally:
        observability.configure()
        provider.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"accept_run traced", "invoke_agent traced", "chat scripted", "execute_tool stamp"}
    attempt = spans["invoke_agent traced"]
    assert attempt.attributes is not None
    assert (attempt.attributes["perdure.engine"], attempt.attributes["perdure.run_id"]) == ("dbos", "t-1")
    assert attempt.attributes["perdure.attempt"] == 1 and attempt.attributes["perdure.run.status"] == "completed"
    assert attempt.context is not None
    run_trace = [
        s.name for s in exporter.get_finished_spans() if s.context and s.context.trace_id == attempt.context.trace_id
    ]
    # One trace: the run's acceptance, its attempt and its steps. (The second call accepted no new run, but
    # could not know before asking DBOS: its accept_run span is a trace of its own, with nothing in it.)
    assert sorted(run_trace) == [
        "accept_run traced",
        "chat scripted",
        "chat scripted",
        "execute_tool stamp",
        "invoke_agent traced",
    ]
    tool = spans["execute_tool stamp"]
    assert tool.parent is not None and tool.parent.span_id == attempt.context.span_id
