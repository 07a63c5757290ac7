"""Activity side: a model request and a tool call, executed by ``perdure``'s shared step code.

Activities heartbeat in the background while they run, so a worker killed mid-step is noticed after the
heartbeat timeout. Errors carry their retry behaviour: a transient model error is a retryable
``ApplicationError`` (Temporal retries it, bounded), a terminal one is non-retryable and fails the run with its
message; tool exceptions and ``ModelRetry`` come back as recorded outcomes (never retried).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._engine import perform_model_step, perform_tool_step
from .._exceptions import ModelHTTPError, PerdureError
from .._ops import ModelStep, ToolStep
from .._tools import ToolOutcome
from ..messages import ModelMessage
from ..models import Model, ModelRequestParameters, RetryConfig
from ..observability._spans import attempt_context
from ..usage import Usage
from ._names import ENGINE, MODEL_REQUEST_QUERY
from ._options import AgentConfig
from ._wire import (
    Conversation,
    ModelCall,
    ModelCallResult,
    ToolCall,
    ToolCallResult,
    decode_deps,
    query,
)

# One attempt per activity: transient errors are retried by Temporal, durably, with the agent's backoff.
_ONE_ATTEMPT = RetryConfig(max_attempts=1)


@dataclass
class _Entry:
    messages: list[ModelMessage]
    checkpoints: dict[str, int]
    params: dict[str, ModelRequestParameters] = field(default_factory=dict)


class ConversationCache:
    """Per worker: the conversation of recent runs, so each model request ships only its new messages."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str], call: ModelCall) -> tuple[list[ModelMessage], ModelRequestParameters] | None:
        entry = self._entries.get(key)
        prefix: list[ModelMessage] = []
        if call.prefix_count:
            count = entry.checkpoints.get(call.prefix_digest) if entry is not None else None
            if entry is None or count != call.prefix_count or count > len(entry.messages):
                return None
            prefix = entry.messages[:count]
        params = call.params or (entry.params.get(call.params_digest) if entry is not None else None)
        if params is None:
            return None
        if entry is not None:
            self._entries.move_to_end(key)
        return prefix + call.new_messages, params

    def put(
        self,
        key: tuple[str, str],
        call: ModelCall,
        messages: list[ModelMessage],
        params: ModelRequestParameters,
        *,
        fresh: bool,
    ) -> None:
        if self.size <= 0:
            return
        entry = self._entries.get(key)
        if entry is None or fresh:
            entry = _Entry(messages, {call.prefix_digest: call.prefix_count})
            self._entries[key] = entry
        entry.messages = messages
        entry.checkpoints[call.digest] = len(messages)
        while len(entry.checkpoints) > 4:  # the last few requests: enough for retries of the current one
            entry.checkpoints.pop(next(iter(entry.checkpoints)))
        entry.params[call.params_digest] = params
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs (a sync tool in a thread, a long model request)."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return
    interval = max(0.05, timeout.total_seconds() / 4)

    async def beat() -> None:
        while True:  # the first beat after one interval: a short step costs no heartbeat call at all
            await asyncio.sleep(interval)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _non_retryable(error: PerdureError) -> ApplicationError:
    return ApplicationError(error.message, error.to_record(), type=type(error).__name__, non_retryable=True)


def make_activities(
    config: AgentConfig, cache: ConversationCache, resolve_model: Callable[[str | None], Model]
) -> list[Callable[..., Any]]:
    """The two activities of one agent: ``perdure:<agent>:model_request`` and ``perdure:<agent>:tool_call``.

    ``cache``: this worker's conversations; ``resolve_model``: the run's model string (or None) to a model.
    """
    agent = config.agent

    async def conversation(call: ModelCall) -> tuple[list[ModelMessage], ModelRequestParameters]:
        info = activity.info()
        key = (info.workflow_id or "", call.run_id)
        hit = cache.get(key, call)
        if hit is not None:
            cache.hits += 1
            cache.put(key, call, hit[0], hit[1], fresh=False)
            return hit
        # Another worker (or a restart) sent the earlier requests: ask the workflow. Queries are not recorded.
        cache.misses += 1
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        raw = await query(handle, MODEL_REQUEST_QUERY, {"run_id": call.run_id, "key": call.key})
        conv = Conversation.model_validate(raw)
        cache.put(key, call, conv.messages, conv.params, fresh=True)
        return conv.messages, conv.params

    def attempt_of(call: ModelCall | ToolCall) -> Any:
        """The step's span joins the attempt that scheduled it (its ``invoke_agent`` span, in the workflow)."""
        return attempt_context(
            agent,
            run_id=call.run_id,
            engine=ENGINE,
            attempt=call.attempt,
            trace_context=call.trace_context,
            step_try=activity.info().attempt,
        )

    async def model_request(payload: dict[str, Any]) -> dict[str, Any]:
        call = ModelCall.model_validate(payload)
        async with heartbeating():
            # Not having the conversation is transient (the query is retried, then the activity): outside the try.
            messages, params = await conversation(call)
            try:
                model = resolve_model(call.model)
                step = ModelStep(
                    key=call.key,
                    turn=call.turn,
                    model_name=model.model_name,
                    messages=messages,
                    settings=call.settings,
                    params=params,
                )
                with attempt_of(call):
                    response = await perform_model_step(model, step, _ONE_ATTEMPT)
            except ModelHTTPError as e:
                delay = timedelta(seconds=e.retry_after) if e.transient and e.retry_after else None
                raise ApplicationError(
                    e.message,
                    e.to_record(),
                    type="ModelHTTPError",
                    non_retryable=not e.transient,
                    next_retry_delay=delay,
                ) from None
            except PerdureError as e:
                raise _non_retryable(e) from None
            except (ApplicationError, asyncio.CancelledError):
                raise
            except Exception as e:
                # A model that raises something else has a bug a retry will not fix: fail the run, clearly.
                message = f"model request {call.key!r} failed: {type(e).__name__}: {e}"
                record = {"type": "AgentRunError", "message": message}
                raise ApplicationError(message, record, type=type(e).__name__, non_retryable=True) from None
        return ModelCallResult(key=call.key, describe=call.describe, response=response, attempt=call.attempt).dump()

    async def tool_call(payload: dict[str, Any]) -> dict[str, Any]:
        call = ToolCall.model_validate(payload)
        if call.side_effects == "at_most_once" and activity.info().attempt > 1:
            # An earlier attempt may have run the tool: never run an at-most-once tool again.
            outcome = ToolOutcome(kind="unknown")
        else:
            try:
                deps = decode_deps(agent, call.deps)
            except Exception as e:
                message = f"run {call.run_id!r}: cannot rebuild deps for tool {call.tool_name!r}: {e}"
                raise ApplicationError(
                    message, {"type": "UserError", "message": message}, type="UserError", non_retryable=True
                ) from None
            step = ToolStep(
                key=call.key,
                turn=call.turn,
                tool_name=call.tool_name,
                args=call.args,
                tool_call_id=call.tool_call_id,
                side_effects=call.side_effects,
                idempotency_key=call.idempotency_key,
                retry=call.retry,
                usage=Usage(**call.usage) if call.usage is not None else None,
                model_name=call.model_name,
            )
            async with heartbeating():
                with attempt_of(call):
                    outcome = await perform_tool_step(agent, step, deps=deps, run_id=call.run_id, prompt=call.prompt)
        return ToolCallResult(key=call.key, describe=call.describe, outcome=outcome, attempt=call.attempt).dump()

    return [
        activity.defn(name=config.model_activity_name)(model_request),
        activity.defn(name=config.tool_activity_name)(tool_call),
    ]
