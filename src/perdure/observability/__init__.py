"""OpenTelemetry traces and metrics of agent runs, on every engine.

perdure uses the OpenTelemetry *API* only. Configure an SDK (exporters, sampling) the way you do for the rest of
your application and perdure's spans and metrics appear; configure none and they cost next to nothing.

Traces
======

========================  =====================================================================================
span                      when
========================  =====================================================================================
``invoke_agent <agent>``  one per run *attempt* (``agent.run()``: one; a durable run resumed after a crash: one
                          per process that worked on it). ``perdure.run.status`` says how the attempt ended:
                          completed, failed, cancelled, waiting (for a human) or interrupted (to be resumed).
``chat <model>``          one per model request that was executed (retries of transient errors are events).
``execute_tool <tool>``   one per tool call that was executed.
``await_approval <tool>`` one per wait for a human decision, from the moment the run suspended to the decision.
``accept_run <agent>``    a durable run accepted outside any span: the root of the run's trace.
========================  =====================================================================================

Every span carries ``perdure.run_id``, ``perdure.engine`` (``inline``, ``local``, ``dbos``, ``temporal``,
``prefect``) and ``perdure.attempt``; GenAI attributes follow the OpenTelemetry semantic conventions
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.response.finish_reasons``,
``gen_ai.tool.name``, ...). The agent's name (``gen_ai.agent.name``) is on the run-level spans (``invoke_agent``,
``accept_run``, ``await_approval``), not repeated on each step span below them; the deprecated ``gen_ai.system``
is not set (its successor ``gen_ai.provider.name`` is). Every attribute costs on every span of every step.

**One run, one trace.** When a durable run is accepted, the current trace context is recorded with it (or, if
there is none, an ``accept_run`` span starts a new trace). Every attempt's ``invoke_agent`` span is a *child*
of that recorded context, in whatever process and however much later, so a run that spans three processes and
two days is one trace. If the process that resumes a run is itself inside another trace (a request handler
calling ``resume``), its span gets a *link* to that caller.

**Replayed steps are left out.** A recorded step that an attempt replays is not executed, so it gets no span
and no duration sample: each ``chat``/``execute_tool`` span is a step that really ran, once. The attempt span
counts both (``perdure.steps.replayed``, ``perdure.steps.executed``).

**What an attempt is, per engine.** Embedded and DBOS: one process executing the run, from its start or resume
to its end, a wait for a human, or its process's death. Prefect: one execution of the run's flow run. Temporal:
one worker's *live* stretch of the run's workflow code (workflow code reports nothing while it replays a
history), from the first step it schedules to the run's end, a wait for a human, a continue-as-new, or the
workflow leaving the worker; the trace context travels in the workflow input and, with the attempt's number,
to the activities, so a step's span is a child of the attempt that scheduled it, wherever it executes. When
Temporal itself runs an activity again (its worker died, or a transient error), that try keeps the attempt
that scheduled it and says its own try in ``perdure.retry.attempt``. Workflow code reports from inside the
workflow task: give Temporal workers a ``BatchSpanProcessor`` (an exporter that blocks would hold the task).

**No content by default.** Prompts, messages, tool arguments and results and run outputs may hold personal
data: they go on spans only with ``configure(include_content=True)`` (or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, or ``configure_agent(agent, include_content=True)``
for one agent). Error messages of failed steps are recorded.

Metrics
=======

===================================  ==========================================================================
``perdure.runs``                     counter by ``perdure.run.status`` (started, completed, failed, cancelled),
                                     ``gen_ai.agent.name``, ``perdure.engine``
``perdure.run.attempts``             counter of attempts (more attempts than runs: runs resumed after crashes)
``perdure.step.duration``            histogram (s) of executed steps by ``perdure.step.kind`` (model, tool)
``perdure.model.retries``            counter of retried transient model errors, by ``error.type``
``perdure.approvals.waiting``        up-down counter of calls waiting for a human decision
``gen_ai.client.token.usage``        histogram of tokens per model request, by ``gen_ai.token.type`` (input,
                                     output), ``gen_ai.operation.name``, ``gen_ai.provider.name``,
                                     ``gen_ai.request.model``, ``gen_ai.response.model``: the GenAI semantic
                                     convention's
===================================  ==========================================================================

Step measurements carry no exemplars: an SDK's default exemplar filter samples every measurement taken in a
sampled span, at nearly the cost of the point itself, and each step's span has the same numbers (its duration,
its tokens). Find slow or costly steps by their spans.

Cost: with the SDK configured, each executed step costs one span and one ``perdure.step.duration`` point (a
model request two ``gen_ai.client.token.usage`` points more), each run two spans and three counter points. That
is the SDK's own work (``bench/bench_observability.py``); with no SDK configured they are no-op calls.

Logfire
=======

Logfire *is* an OpenTelemetry SDK: configure it and perdure's spans and metrics go to Logfire, nothing
perdure-specific needed::

    import logfire

    logfire.configure()  # reads LOGFIRE_TOKEN; perdure's runs now appear in Logfire

    result = await DurableAgent(agent).run("Refund order 42", run_id="refund-42")

Any other SDK works the same way, e.g. ``opentelemetry-instrument python app.py`` or::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)

Engines report through ``perdure.observability.engine``.
"""

from ._config import configure, configure_agent

__all__ = ["configure", "configure_agent"]
