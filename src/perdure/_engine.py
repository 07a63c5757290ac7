"""Executing steps, shared by every engine, and the inline (non-durable) engine behind ``agent.run()``.

An engine decides *how* each step is executed and recorded; *what* executing a step means is written here
once: ``perform_model_step`` sends a request (retrying transient errors, bounded) and ``perform_tool_step``
validates arguments, builds the ``RunContext``, calls the tool and turns what happened into a recorded
``ToolOutcome``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from ._context import RunContext
from ._exceptions import ApprovalRequired, ModelRetry, ToolError, UserError
from ._ops import ModelStep, Step, StepResult, ToolStep, WaitStep
from ._spec import AgentSpec, SupportsSpec, spec_of
from ._tools import ToolOutcome
from .messages import ModelResponse
from .models import Model, RetryConfig, request_with_retries
from .usage import Usage

__all__ = ["perform_model_step", "perform_tool_step"]


def new_run_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, as uuid4 gives, without importing uuid


async def perform_model_step(
    model: Model,
    step: ModelStep,
    retry: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> ModelResponse:
    """One model request, with bounded retries of transient errors (a ``chat`` span; retries are its events)."""
    from .observability._steps import model_step  # OpenTelemetry loads with the first step, not on import

    async def send() -> ModelResponse:
        return await model.request(step.messages, step.settings, step.params)

    with model_step(model, step) as span:
        if sleep is None:
            response = await request_with_retries(send, retry, on_retry=span.on_retry)
        else:
            response = await request_with_retries(send, retry, sleep=sleep, on_retry=span.on_retry)
        span.response(response)
    return response


async def perform_tool_step(
    agent: AgentSpec | SupportsSpec, step: ToolStep, *, deps: Any, run_id: str, prompt: str | None = None
) -> ToolOutcome:
    """One tool call. ``ModelRetry`` and exceptions become outcomes: engines record them, never retry them."""
    outcome, _ = await _call_tool(agent, step, deps=deps, run_id=run_id, prompt=prompt)
    return outcome


async def perform_tool_step_with_error(
    agent: AgentSpec | SupportsSpec, step: ToolStep, *, deps: Any, run_id: str, prompt: str | None = None
) -> tuple[ToolOutcome, Exception | None]:
    """``perform_tool_step``, also returning the exception behind an ``error`` outcome (for its traceback)."""
    return await _call_tool(agent, step, deps=deps, run_id=run_id, prompt=prompt)


async def _call_tool(
    agent: AgentSpec | SupportsSpec, step: ToolStep, *, deps: Any, run_id: str, prompt: str | None
) -> tuple[ToolOutcome, Exception | None]:
    """``perform_tool_step``, also returning the exception behind an ``error`` outcome (for its traceback)."""
    from .observability._steps import tool_step  # OpenTelemetry loads with the first step, not on import

    with tool_step(agent, step) as span:
        outcome, error = await _invoke_tool(agent, step, deps=deps, run_id=run_id, prompt=prompt)
        span.outcome(outcome, error)
    return outcome, error


async def _invoke_tool(
    agent: AgentSpec | SupportsSpec, step: ToolStep, *, deps: Any, run_id: str, prompt: str | None
) -> tuple[ToolOutcome, Exception | None]:
    tool = spec_of(agent).tools.get(step.tool_name)
    if tool is None:
        message = f"the agent has no tool {step.tool_name!r}"
        return ToolOutcome(kind="error", message=message, error_type="UserError"), None
    ctx: RunContext[Any] = RunContext(
        deps=deps,
        run_id=run_id,
        prompt=prompt,
        tool_name=step.tool_name,
        tool_call_id=step.tool_call_id,
        step_key=step.key,
        idempotency_key=step.idempotency_key,
        retry=step.retry,
        usage=Usage(**vars(step.usage)) if step.usage is not None else Usage(),
        model_name=step.model_name,
    )
    try:
        value = await tool.call(tool.validate_args(step.args), ctx)
    except ModelRetry as e:
        return ToolOutcome(kind="retry", message=e.message), None
    except Exception as e:
        message = f"{type(e).__name__}: {e}"
        return ToolOutcome(kind="error", message=message, error_type=type(e).__name__), e
    try:
        return ToolOutcome(kind="return", value=tool.dump_result(value)), None
    except UserError as e:
        return ToolOutcome(kind="error", message=e.message, error_type="UserError"), e


class InlineEngine:
    """Executes every step directly, recording nothing: ``agent.run()``."""

    def __init__(
        self, agent: AgentSpec | SupportsSpec, model: Model, *, deps: Any, run_id: str, prompt: str | None
    ) -> None:
        self.agent = spec_of(agent)
        self.model = model
        self.deps = deps
        self.run_id = run_id
        self.prompt = prompt
        self.tool_errors: dict[str, Exception] = {}
        """The exception behind each failed tool (by name), so a plain run's ToolError keeps its traceback."""
        self.pending: list[dict[str, Any]] = []
        """Calls waiting for an approval that a plain run cannot give."""

    async def execute(self, step: Step) -> StepResult:
        if isinstance(step, ModelStep):
            return await perform_model_step(self.model, step, self.agent.retry_config)
        if isinstance(step, ToolStep):
            outcome, error = await _call_tool(self.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt)
            if error is not None:
                self.tool_errors[step.tool_name] = error
            return outcome
        assert isinstance(step, WaitStep)
        self.pending.append({"tool_name": step.tool_name, "tool_call_id": step.tool_call_id, "args": step.args})
        raise _approval_required(self.pending[-1:])

    def finish(self, error: ToolError | ApprovalRequired) -> ToolError | ApprovalRequired:
        """The error a plain run raises: a ToolError caused by the tool's own exception (its traceback into the
        user's code), or one ApprovalRequired listing every call of a parallel batch that needs approval."""
        if isinstance(error, ToolError):
            cause = self.tool_errors.get(error.tool_name)
            if cause is not None and error.__cause__ is None:
                error.__cause__ = cause
            return error
        return _approval_required(self.pending) if len(self.pending) > len(error.pending) else error


def _approval_required(pending: list[dict[str, Any]]) -> ApprovalRequired:
    names = ", ".join(repr(p["tool_name"]) for p in pending)
    return ApprovalRequired(
        f"tool {names} requires approval, and a plain agent.run() cannot wait for one; run the agent durably "
        "(DurableAgent(agent).run(...)) to suspend the run until a decision arrives",
        pending=list(pending),
    )
