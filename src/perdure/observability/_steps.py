"""Step-level telemetry: a ``chat`` span per model request, an ``execute_tool`` span per tool call.

Called from ``perform_model_step``/``perform_tool_step``, which every engine uses to *execute* a step: a
replayed step is never executed, so it gets no span (and no duration sample). The hot path of every durable
step: kept to plain attribute dicts, and no serialization unless content is wanted and the span records.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _attributes as A
from ._config import include_content_for, instruments, tracer
from ._spans import _CURRENT, RunAttempt, _json

if TYPE_CHECKING:
    from .._exceptions import ModelHTTPError
    from .._ops import ModelStep, ToolStep
    from .._spec import AgentSpec, SupportsSpec
    from .._tools import ToolOutcome
    from ..messages import ModelResponse
    from ..models import Model

__all__ = ["ModelStepSpan", "ToolStepSpan", "model_step", "tool_step"]

# Step measurements are taken in a context without a span (an empty Context would mean "the current one"), so they
# carry no exemplar: an SDK's default exemplar filter samples every measurement taken in a sampled span, which costs
# nearly as much as the point itself, and the step's span has the same numbers (its duration, its tokens).
_NO_SPAN = trace.set_span_in_context(trace.INVALID_SPAN)

_SETTINGS = (
    ("temperature", A.REQUEST_TEMPERATURE),
    ("max_tokens", A.REQUEST_MAX_TOKENS),
    ("top_p", A.REQUEST_TOP_P),
    ("seed", A.REQUEST_SEED),
)


class _StepSpan:
    kind: str
    __slots__ = ("attempt", "include_content", "span", "started", "token")

    def __init__(self) -> None:
        self.attempt: RunAttempt | None = _CURRENT.get()
        self.span: trace.Span = trace.INVALID_SPAN
        self.token: object = None
        self.started = 0.0
        self.include_content = False

    def _start(self, name: str, kind: SpanKind, attributes: dict[str, Any]) -> None:
        attempt = self.attempt
        if attempt is not None:
            attributes.update(attempt.step_attributes)
            attempt.executed_steps += 1
        self.span = span = tracer().start_span(name, kind=kind, attributes=attributes)
        self.token = otel_context.attach(trace.set_span_in_context(span))
        self.started = time.perf_counter()

    def _end(self, error: BaseException | None, error_type: str | None = None) -> None:
        duration = time.perf_counter() - self.started
        otel_context.detach(self.token)  # type: ignore[arg-type]
        span = self.span
        if error is not None and span.is_recording():
            span.record_exception(error)
            span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        span.end()
        attempt = self.attempt
        attributes = attempt.step_metric_attributes[self.kind] if attempt is not None else {A.STEP_KIND: self.kind}
        if error is not None:
            error_type = type(error).__qualname__
        if error_type is not None:
            attributes = {**attributes, A.ERROR_TYPE: error_type}
        instruments().step_duration.record(duration, attributes, _NO_SPAN)


class ModelStepSpan(_StepSpan):
    """``with model_step(model, step) as span:`` around one model request (with its retries)."""

    kind = "model"
    __slots__ = ("model", "provider", "retries", "step")

    def __init__(self, model: Model, step: ModelStep) -> None:
        super().__init__()
        self.model = model
        self.step = step
        self.provider = model.system
        self.retries = 0

    def __enter__(self) -> ModelStepSpan:
        model_name = self.model.model_name
        attempt = self.attempt
        self.include_content = attempt.include_content if attempt is not None else include_content_for(None)
        attributes: dict[str, Any] = {
            A.OPERATION_NAME: "chat",
            A.REQUEST_MODEL: model_name,
            A.PROVIDER_NAME: self.provider,
            A.STEP_KEY: self.step.key,
        }
        settings = self.step.settings
        if settings:
            for key, attribute in _SETTINGS:
                value = settings.get(key)
                if value is not None:
                    attributes[attribute] = value
        self._start(f"chat {model_name}", SpanKind.CLIENT, attributes)
        if self.include_content and self.span.is_recording():
            from ..messages import ModelMessagesTypeAdapter

            self.span.set_attribute(A.INPUT_MESSAGES, ModelMessagesTypeAdapter.dump_json(self.step.messages).decode())
        return self

    def on_retry(self, error: ModelHTTPError, attempt: int) -> None:
        """``request_with_retries``' hook: a transient error is about to be retried."""
        self.retries += 1
        error_type = str(error.status_code) if error.status_code is not None else type(error).__qualname__
        if self.span.is_recording():
            event: dict[str, Any] = {A.ERROR_TYPE: error_type, A.RETRY_ATTEMPT: attempt}
            if error.status_code is not None:
                event[A.HTTP_STATUS_CODE] = error.status_code
            self.span.add_event("retry", event)
        attributes = self._genai_attributes()
        if self.attempt is not None:
            attributes.update(self.attempt.metric_attributes)
        attributes[A.ERROR_TYPE] = error_type
        instruments().model_retries.add(1, attributes, _NO_SPAN)

    def response(self, response: ModelResponse) -> None:
        """The model's answer: response model, token usage, finish reason (and messages, with content)."""
        usage = response.usage
        token_usage = instruments().token_usage
        input_points, output_points = _token_attributes(self.provider, self.model.model_name, response.model_name)
        token_usage.record(usage.input_tokens, input_points, _NO_SPAN)
        token_usage.record(usage.output_tokens, output_points, _NO_SPAN)
        span = self.span
        if not span.is_recording():
            return
        done: dict[str, Any] = {A.USAGE_INPUT_TOKENS: usage.input_tokens, A.USAGE_OUTPUT_TOKENS: usage.output_tokens}
        if response.model_name:
            done[A.RESPONSE_MODEL] = response.model_name
        if response.finish_reason:
            done[A.RESPONSE_FINISH_REASONS] = (response.finish_reason,)
        if self.retries:
            done[A.MODEL_RETRIES] = self.retries
        if self.include_content:
            from ..messages import ModelMessagesTypeAdapter

            done[A.OUTPUT_MESSAGES] = ModelMessagesTypeAdapter.dump_json([response]).decode()
        span.set_attributes(done)

    def _genai_attributes(self) -> dict[str, Any]:
        return {A.OPERATION_NAME: "chat", A.PROVIDER_NAME: self.provider, A.REQUEST_MODEL: self.model.model_name}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end(exc)


class ToolStepSpan(_StepSpan):
    """``with tool_step(agent, step) as span:`` around one tool call; ``span.outcome(o)`` records how it went."""

    kind = "tool"
    __slots__ = ("agent", "error_type", "step")

    def __init__(self, agent: AgentSpec | SupportsSpec, step: ToolStep) -> None:
        super().__init__()
        self.agent = agent
        self.step = step
        self.error_type: str | None = None

    def __enter__(self) -> ToolStepSpan:
        step = self.step
        attempt = self.attempt
        self.include_content = attempt.include_content if attempt is not None else include_content_for(self.agent)
        attributes: dict[str, Any] = {
            A.OPERATION_NAME: "execute_tool",
            A.TOOL_NAME: step.tool_name,
            A.TOOL_CALL_ID: step.tool_call_id,
            A.TOOL_TYPE: "function",
            A.TOOL_SIDE_EFFECTS: step.side_effects,
            A.STEP_KEY: step.key,
        }
        if attempt is None and self.agent.name:
            attributes[A.AGENT_NAME] = self.agent.name
        self._start(f"execute_tool {step.tool_name}", SpanKind.INTERNAL, attributes)
        if self.include_content and self.span.is_recording():
            self.span.set_attribute(A.TOOL_CALL_ARGUMENTS, _json(step.args))
        return self

    def outcome(self, outcome: ToolOutcome, error: BaseException | None = None) -> ToolOutcome:
        """Record the call's outcome (returned as is). A tool error (``error``: its exception) marks the span."""
        if outcome.kind == "error":
            self.error_type = outcome.error_type or "error"
        span = self.span
        if span.is_recording():
            span.set_attribute(A.TOOL_OUTCOME, outcome.kind)
            if outcome.kind == "error":
                error_type = outcome.error_type or "error"
                if error is not None:
                    span.record_exception(error)
                span.set_attribute(A.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, outcome.message or error_type))
            if self.include_content:
                result = outcome.value if outcome.kind == "return" else outcome.message
                if result is not None:
                    span.set_attribute(A.TOOL_CALL_RESULT, _json(result))
        return outcome

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end(exc, self.error_type)


# The token-usage points' attributes: the semantic convention's, built once per (provider, model, response model).
_TOKEN_ATTRIBUTES: dict[tuple[str, str, str | None], tuple[dict[str, Any], dict[str, Any]]] = {}


def _token_attributes(
    provider: str, model_name: str, response_model: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    key = (provider, model_name, response_model)
    cached = _TOKEN_ATTRIBUTES.get(key)
    if cached is None:
        base: dict[str, Any] = {A.OPERATION_NAME: "chat", A.PROVIDER_NAME: provider, A.REQUEST_MODEL: model_name}
        if response_model:
            base[A.RESPONSE_MODEL] = response_model
        cached = ({**base, A.TOKEN_TYPE: "input"}, {**base, A.TOKEN_TYPE: "output"})
        if len(_TOKEN_ATTRIBUTES) < 1024:  # bounded: model names come from providers' responses
            _TOKEN_ATTRIBUTES[key] = cached
    return cached


def model_step(model: Model, step: ModelStep) -> ModelStepSpan:
    return ModelStepSpan(model, step)


def tool_step(agent: AgentSpec | SupportsSpec, step: ToolStep) -> ToolStepSpan:
    return ToolStepSpan(agent, step)
