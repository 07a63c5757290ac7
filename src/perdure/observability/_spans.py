"""Run-level telemetry: the trace a run starts at acceptance, one ``invoke_agent`` span per attempt, waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._exceptions import RunCancelled, RunWaiting
from . import _attributes as A
from ._config import include_content_for, instruments, tracer

if TYPE_CHECKING:
    from .._loop import AgentRunResult
    from .._spec import AgentSpec, SupportsSpec

__all__ = [
    "Acceptance",
    "RunAttempt",
    "accept_run",
    "accept_trace_context",
    "approval_wait_ended",
    "approval_wait_started",
    "attempt_context",
    "run_attempt",
    "run_ended",
    "run_started",
    "start_attempt",
]

RunStatus = Literal["completed", "failed", "cancelled", "waiting", "interrupted"]
TraceContext = str | Mapping[str, str] | None

# A run's recorded trace context is perdure's own data, persisted with the run: always W3C (traceparent,
# tracestate, baggage), whatever propagators the process configured for its incoming requests. So a run accepted
# under one propagator setup resumes under another, and an SDK that distrusts incoming contexts (Logfire's
# distributed_tracing) does not drop it.
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])

# The attempt whose steps are executing in this context: step spans take their perdure.* attributes from it.
_CURRENT: ContextVar[RunAttempt | None] = ContextVar("perdure_run_attempt", default=None)


class RunAttempt:
    """One attempt of one run, as telemetry sees it. Yielded by ``run_attempt``.

    ``replayed_steps`` is for the engine to fill in (how many recorded steps this attempt replayed instead of
    executing); executed steps are counted by the step spans themselves.
    """

    def __init__(
        self,
        agent: AgentSpec | SupportsSpec | None,
        *,
        run_id: str,
        engine: str,
        attempt: int,
        include_content: bool,
    ) -> None:
        self.agent_name = agent.name if agent is not None else None
        self.run_id = run_id
        self.engine = engine
        self.attempt = attempt
        self.include_content = include_content
        self.replayed_steps = 0
        self.executed_steps = 0
        self.status: RunStatus | None = None
        self.span: trace.Span = trace.INVALID_SPAN
        self.context: otel_context.Context | None = None
        self.ended = False
        # Precomputed once per attempt: every step span and metric point of the attempt reuses them. Step spans
        # leave the agent's name to their invoke_agent span (every attribute costs on every span).
        self.step_attributes: dict[str, Any] = {A.RUN_ID: run_id, A.ENGINE: engine, A.ATTEMPT: attempt}
        self.span_attributes: dict[str, Any] = dict(self.step_attributes)
        self.metric_attributes: dict[str, Any] = {A.ENGINE: engine}
        if self.agent_name:
            self.span_attributes[A.AGENT_NAME] = self.agent_name
            self.metric_attributes[A.AGENT_NAME] = self.agent_name
        self.step_metric_attributes = {
            kind: {**self.metric_attributes, A.STEP_KIND: kind} for kind in ("model", "tool")
        }

    def __repr__(self) -> str:
        return f"RunAttempt({self.run_id!r}, engine={self.engine!r}, attempt={self.attempt})"

    def set_status(self, status: RunStatus) -> None:
        """Say how the attempt ended when its exception does not (e.g. an engine's own suspension)."""
        self.status = status

    def set_result(self, result: AgentRunResult[Any]) -> None:
        """The run's result: its total usage goes on the span (and its output, with ``include_content``)."""
        span = self.span
        if not span.is_recording():
            return
        usage = result.usage()
        done: dict[str, Any] = {A.USAGE_INPUT_TOKENS: usage.input_tokens, A.USAGE_OUTPUT_TOKENS: usage.output_tokens}
        if self.include_content:
            done[A.RUN_OUTPUT] = _json(result.output)
        span.set_attributes(done)

    @property
    def trace_context(self) -> dict[str, str] | None:
        """This attempt's span as a W3C carrier: for engines that persist it when the run had none, or ship it
        with steps that execute elsewhere (``attempt_context``)."""
        return _carrier(trace.set_span_in_context(self.span))

    def end(self, status: RunStatus, error: BaseException | None = None) -> None:
        """End the attempt (``start_attempt``): its status, its error if it failed; ended runs are counted.

        ``status``: completed, failed or cancelled (the run ended), waiting (for a human) or interrupted (it goes
        on in a later attempt). Ending twice does nothing.
        """
        if self.ended:
            return
        self.ended = True
        self.status = status
        span = self.span
        if span.is_recording():
            span.set_attributes(
                {A.RUN_STATUS: status, A.STEPS_REPLAYED: self.replayed_steps, A.STEPS_EXECUTED: self.executed_steps}
            )
            if status == "failed" and error is not None:
                span.record_exception(error)
                span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        span.end()
        if status in ("completed", "failed", "cancelled"):
            instruments().runs.add(1, {**self.metric_attributes, A.RUN_STATUS: status})


@contextmanager
def run_attempt(
    agent: AgentSpec | SupportsSpec | None,
    *,
    run_id: str,
    engine: str,
    attempt: int = 1,
    trace_context: TraceContext = None,
    model: str | None = None,
    prompt: str | None = None,
    new_run: bool | None = None,
    suspend: tuple[type[BaseException], ...] = (),
    count_replayed: Callable[[], int] | None = None,
) -> Iterator[RunAttempt]:
    """Report one attempt of a run: an ``invoke_agent <agent>`` span, the step spans inside it, run metrics.

    Engines wrap each attempt's ``drive(...)`` in it; every ``perform_model_step``/``perform_tool_step`` call
    inside becomes a ``chat``/``execute_tool`` span of the attempt, with the run's ``perdure.*`` attributes.

    Args:
        agent: the agent (its name, its ``include_content`` setting).
        run_id, engine, attempt: put on every span of the attempt (``perdure.run_id`` ...). Attempts count from 1.
        trace_context: the W3C carrier recorded when the run was accepted (``accept_trace_context``), as a dict
            or its JSON: the attempt's span becomes its child, so every attempt of a run, in any process, is in
            one trace. ``None``: the span is a child of the current context.
        model: the model name, for ``gen_ai.request.model``.
        prompt: on the span as ``perdure.run.prompt`` only with ``include_content``.
        new_run: count the run as started (``perdure.runs{perdure.run.status=started}``); default: attempt 1.
        suspend: exception types by which the engine suspends the run (status ``waiting``, not an error).
        count_replayed: called when the attempt ends: how many recorded steps it replayed (or set
            ``attempt.replayed_steps``).

    How the attempt ended (``perdure.run.status``) comes from its exception: none is ``completed``;
    ``RunWaiting`` (or ``suspend``) is ``waiting``; ``RunCancelled`` is ``cancelled``; a cancelled task or
    interpreter exit is ``interrupted`` (the run did not end: it is resumed later); anything else is ``failed``.
    ``RunAttempt.set_status`` overrides it. Only completed, failed and cancelled count as ended runs.

    ::

        with run_attempt(agent, run_id=run_id, engine="dbos", attempt=n, trace_context=carrier) as attempt:
            result = await drive(agent.new_loop(run, deps, model), execute)
            attempt.set_result(result)
    """
    state = start_attempt(
        agent,
        run_id=run_id,
        engine=engine,
        attempt=attempt,
        trace_context=trace_context,
        model=model,
        prompt=prompt,
        new_run=new_run,
    )
    assert state.context is not None
    token = otel_context.attach(state.context)
    state_token = _CURRENT.set(state)
    error: BaseException | None = None
    try:
        yield state
    except BaseException as e:
        error = e
        raise
    finally:
        _CURRENT.reset(state_token)
        otel_context.detach(token)
        if count_replayed is not None:
            state.replayed_steps = count_replayed()
        state.end(state.status or _status_of(error, suspend), error)


def start_attempt(
    agent: AgentSpec | SupportsSpec | None,
    *,
    run_id: str,
    engine: str,
    attempt: int = 1,
    trace_context: TraceContext = None,
    model: str | None = None,
    prompt: str | None = None,
    new_run: bool | None = None,
) -> RunAttempt:
    """``run_attempt`` for attempts that do not fit a ``with`` block: the caller ends it with ``RunAttempt.end``.

    For engines whose attempts start and end in different places (Temporal workflow code, where an attempt
    starts when a worker's code runs live and ends when the run waits, ends, or leaves the worker). The span is
    not made current: ship ``attempt.trace_context`` to where the steps execute (``attempt_context``).
    """
    state = RunAttempt(agent, run_id=run_id, engine=engine, attempt=attempt, include_content=include_content_for(agent))
    parent, links = _parent(trace_context)
    attributes: dict[str, Any] = {A.OPERATION_NAME: "invoke_agent", **state.span_attributes}
    if model:
        attributes[A.REQUEST_MODEL] = model
    span = tracer().start_span(
        f"invoke_agent {state.agent_name}" if state.agent_name else "invoke_agent",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        links=links,
    )
    state.span = span
    state.context = trace.set_span_in_context(span, parent)
    if prompt is not None and state.include_content and span.is_recording():
        span.set_attribute(A.RUN_PROMPT, prompt)
    inst = instruments()
    if new_run if new_run is not None else attempt == 1:
        inst.runs.add(1, {**state.metric_attributes, A.RUN_STATUS: "started"})
    inst.attempts.add(1, state.metric_attributes)
    return state


def _status_of(error: BaseException | None, suspend: tuple[type[BaseException], ...]) -> RunStatus:
    if error is None:
        return "completed"
    if isinstance(error, RunWaiting) or (suspend and isinstance(error, suspend)):
        return "waiting"
    if isinstance(error, RunCancelled):
        return "cancelled"
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt | SystemExit | GeneratorExit):
        return "interrupted"
    return "failed"


@contextmanager
def attempt_context(
    agent: AgentSpec | SupportsSpec | None,
    *,
    run_id: str,
    engine: str,
    attempt: int,
    trace_context: TraceContext = None,
    step_try: int = 1,
) -> Iterator[RunAttempt]:
    """Execute steps of a run attempt whose ``invoke_agent`` span lives elsewhere (no span of its own).

    For engines that execute a step away from the attempt (a Temporal activity on a worker): the step spans
    get the run's ``perdure.*`` attributes, and become children of ``trace_context`` (the carrier of the
    attempt's span, shipped with the step) when it is given. ``step_try``: the engine's own try of this step
    (a Temporal activity attempt); from 2 on, step spans say it in ``perdure.retry.attempt``.
    """
    state = RunAttempt(agent, run_id=run_id, engine=engine, attempt=attempt, include_content=include_content_for(agent))
    if step_try > 1:
        state.step_attributes[A.RETRY_ATTEMPT] = step_try
    token = None
    if trace_context:
        token = otel_context.attach(_PROPAGATOR.extract(_as_carrier(trace_context), otel_context.get_current()))
    state_token = _CURRENT.set(state)
    try:
        yield state
    finally:
        _CURRENT.reset(state_token)
        if token is not None:
            otel_context.detach(token)


def current_trace_context() -> dict[str, str] | None:
    """The current span's context as a W3C carrier, if there is a current span."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return _carrier(current)
    return None


def current_attempt() -> RunAttempt | None:
    """The attempt executing in this context, if any."""
    return _CURRENT.get()


def _as_carrier(trace_context: TraceContext) -> dict[str, str]:
    if not trace_context:
        return {}
    if isinstance(trace_context, str):
        try:
            data = json.loads(trace_context)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(trace_context)


def _parent(trace_context: TraceContext) -> tuple[otel_context.Context, list[Link]]:
    """The recorded context, with a link to the caller's span when the caller is in another trace."""
    current = otel_context.get_current()
    carrier = _as_carrier(trace_context)
    if not carrier:
        return current, []
    parent = _PROPAGATOR.extract(carrier, current)
    recorded = trace.get_current_span(parent).get_span_context()
    if not recorded.is_valid:
        return current, []
    caller = trace.get_current_span(current).get_span_context()
    links = [Link(caller)] if caller.is_valid and caller.trace_id != recorded.trace_id else []
    return parent, links


def _carrier(ctx: otel_context.Context) -> dict[str, str] | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier or None


def accept_trace_context(*, agent_name: str | None, run_id: str, engine: str) -> dict[str, str] | None:
    """The trace a run belongs to, to record with the run when it is accepted (W3C carrier, or None).

    Inside a span (a web request that starts a run, say) the run continues the caller's trace: every attempt's
    ``invoke_agent`` span is a child of that span. Outside any span perdure starts the run's trace with a
    short root span ``accept_run <agent>`` (``perdure.attempt`` 0: before the first attempt), so attempts in
    other processes still share one trace. None when no OpenTelemetry SDK is configured.
    """
    acceptance = accept_run(agent_name=agent_name, run_id=run_id, engine=engine)
    acceptance.commit()
    return acceptance.trace_context


class Acceptance:
    """A run being accepted (``accept_run``): record ``trace_context`` with it, then ``commit()``."""

    __slots__ = ("_root", "trace_context")

    def __init__(self, trace_context: dict[str, str] | None, root: trace.Span | None) -> None:
        self.trace_context = trace_context
        self._root = root

    def commit(self) -> None:
        """The run was accepted: its ``accept_run`` span (if it has one) ends and is reported."""
        root, self._root = self._root, None
        if root is not None:
            root.end()


def accept_run(*, agent_name: str | None, run_id: str, engine: str) -> Acceptance:
    """``accept_trace_context`` for engines that learn only afterwards whether the run was new: ``commit()`` once
    it is; an acceptance never committed (the run existed already) reports nothing."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return Acceptance(_carrier(current), None)
    name = f"accept_run {agent_name}" if agent_name else "accept_run"
    attributes: dict[str, Any] = {A.RUN_ID: run_id, A.ENGINE: engine, A.ATTEMPT: 0}
    if agent_name:
        attributes[A.AGENT_NAME] = agent_name
    root = tracer().start_span(name, context=current, kind=SpanKind.INTERNAL, attributes=attributes)
    if not root.get_span_context().is_valid:
        return Acceptance(None, None)
    return Acceptance(_carrier(trace.set_span_in_context(root, current)), root)


def run_started(*, agent_name: str | None, engine: str) -> None:
    """A run was accepted (``perdure.runs{perdure.run.status=started}`` + 1).

    For engines that accept runs apart from executing them; pass ``run_attempt(..., new_run=False)`` then.
    """
    instruments().runs.add(1, {**_metric_attributes(agent_name, engine), A.RUN_STATUS: "started"})


def run_ended(*, agent_name: str | None, engine: str, status: Literal["completed", "failed", "cancelled"]) -> None:
    """A run ended outside any attempt (a waiting or pending run cancelled): ``perdure.runs`` by status."""
    instruments().runs.add(1, {**_metric_attributes(agent_name, engine), A.RUN_STATUS: status})


def approval_wait_started(*, agent_name: str | None, engine: str) -> None:
    """A tool call started waiting for a human decision (``perdure.approvals.waiting`` + 1)."""
    instruments().approvals_waiting.add(1, _metric_attributes(agent_name, engine))


def approval_wait_ended(
    *,
    agent_name: str | None,
    run_id: str,
    engine: str,
    attempt: int,
    tool_name: str,
    tool_call_id: str,
    reason: str,
    outcome: Literal["approved", "denied", "cancelled"],
    started_at: float,
    ended_at: float | None = None,
    trace_context: TraceContext = None,
    args: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> None:
    """A wait for a human decision ended: one span covering the whole wait, and ``perdure.approvals.waiting`` - 1.

    Waits hold no process, so the span is reported when the wait ends, by the process that records the decision,
    with the wait's real start time (``started_at``, epoch seconds) and the attempt that started it.
    ``args`` and ``note`` go on the span only with ``include_content``.
    """
    instruments().approvals_waiting.add(-1, _metric_attributes(agent_name, engine))
    parent, _ = _parent(trace_context)
    what = "await_approval" if reason == "approval" else "await_decision"
    attributes: dict[str, Any] = {
        A.RUN_ID: run_id,
        A.ENGINE: engine,
        A.ATTEMPT: attempt,
        A.TOOL_NAME: tool_name,
        A.TOOL_CALL_ID: tool_call_id,
        A.WAIT_REASON: reason,
        A.WAIT_OUTCOME: outcome,
    }
    if agent_name:
        attributes[A.AGENT_NAME] = agent_name
    span = tracer().start_span(
        f"{what} {tool_name}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        start_time=int(started_at * 1e9),
    )
    if span.is_recording() and include_content_for(None):
        if args is not None:
            span.set_attribute(A.TOOL_CALL_ARGUMENTS, _json(args))
        if note is not None:
            span.set_attribute(A.WAIT_NOTE, note)
    span.end(end_time=int((time.time() if ended_at is None else ended_at) * 1e9))


def _metric_attributes(agent_name: str | None, engine: str) -> dict[str, Any]:
    return {A.ENGINE: engine, A.AGENT_NAME: agent_name} if agent_name else {A.ENGINE: engine}


def _json(value: Any) -> str:
    from pydantic_core import to_json

    return to_json(value, fallback=repr).decode()
