"""The agent loop, written once: a pure state machine that yields operations and consumes their results.

It imports no engine, no provider SDK and no clock. Given the same operation results it takes the same path,
which is what lets durable engines replay it. Engines drive it through ``drive``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from ._context import RunContext
from ._exceptions import (
    AgentRunError,
    ModelRetry,
    ToolError,
    UnexpectedModelBehavior,
)
from ._ops import (
    Batch,
    Decision,
    ModelStep,
    Operation,
    Step,
    StepResult,
    ToolStep,
    WaitStep,
    approval_key,
    model_key,
    tool_key,
    unknown_key,
)
from ._output import OutputTool
from ._spec import spec_of
from ._tools import Tool, ToolOutcome
from .messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    ToolCallPart,
    ToolReturnPart,
    UserContent,
    UserPromptPart,
)
from .models import ModelRequestParameters, ModelSettings
from .usage import Usage, UsageLimits

if TYPE_CHECKING:
    from ._spec import AgentSpec, SupportsSpec

__all__ = ["AgentRunResult", "Prompt", "RunInput", "drive", "split_prompt"]

Prompt = str | Sequence[UserContent]
"""What ``run()`` takes: text, or a sequence of text and files (``ImageUrl``, ``BinaryContent``...)."""


def split_prompt(prompt: Prompt | None) -> tuple[str | None, list[UserContent] | None]:
    """A prompt as ``RunInput`` keeps it: its text, and its parts when it has files."""
    if prompt is None or isinstance(prompt, str):
        return prompt, None
    import pydantic

    from ._exceptions import UserError

    try:
        parts = pydantic.TypeAdapter(list[UserContent]).validate_python(list(prompt))
    except pydantic.ValidationError as e:
        raise UserError(
            f"a prompt is a string or a sequence of strings and files (ImageUrl, DocumentUrl, AudioUrl, "
            f"BinaryContent), not {prompt!r}: {e.errors()[0]['msg']}"
        ) from None
    text = "\n".join(p for p in parts if isinstance(p, str))
    if all(isinstance(p, str) for p in parts):
        return text, None
    return text, parts


OutputT = TypeVar("OutputT")

NOT_EXECUTED = "Tool not executed - a final result was already processed."
FINAL_PROCESSED = "Final result processed."
UNKNOWN_OUTCOME = (
    "The outcome of this call is unknown: the process running it stopped before its result was recorded, and "
    "this tool is at-most-once, so it was not run again. Do not assume it happened or that it did not; "
    "check before acting on it, or tell the user."
)
TEXT_NOT_ALLOWED = "Plain text responses are not permitted, please include your response in a tool call."
EMPTY_RESPONSE = "Responses without text or tool calls are not permitted."


@dataclass(frozen=True, kw_only=True)
class RunInput:
    """Everything a run starts from. Engines persist it (the local engine: once, at acceptance)."""

    prompt: str | None
    """The prompt's text (what spans, ``ctx.prompt`` and ``perdure runs show`` see)."""
    run_id: str
    message_history: list[ModelMessage] = field(default_factory=list)
    usage_limits: UsageLimits | None = None
    model_settings: ModelSettings | None = None
    model_name: str | None = None
    """The model to use instead of the agent's (a model string, or the name of a Model given to run())."""
    content: list[UserContent] | None = None
    """A prompt made of parts (text and files: ``ImageUrl``, ``BinaryContent``...), sent instead of ``prompt``."""


@dataclass
class AgentRunResult(Generic[OutputT]):
    """The result of a run: ``output``, ``usage()``, ``all_messages()``, ``new_messages()``."""

    output: OutputT
    run_id: str
    _messages: list[ModelMessage]
    _new_from: int
    _usage: Usage

    def usage(self) -> Usage:
        return self._usage

    def all_messages(self) -> list[ModelMessage]:
        return list(self._messages)

    def new_messages(self) -> list[ModelMessage]:
        return list(self._messages[self._new_from :])

    def all_messages_json(self) -> bytes:
        from .messages import ModelMessagesTypeAdapter

        return ModelMessagesTypeAdapter.dump_json(self._messages)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _normalize_ids(response: ModelResponse, turn: int) -> ModelResponse:
    """Give every tool call a unique id: some models send none, or repeat them. Deterministic: replay-safe."""
    seen: set[str] = set()
    changed = False
    parts = list(response.parts)
    for i, part in enumerate(parts):
        if isinstance(part, ToolCallPart):
            cid = part.tool_call_id
            if not cid or cid in seen or "/" in cid:
                cid = f"call_{turn}_{i}"
                parts[i] = part.model_copy(update={"tool_call_id": cid})
                changed = True
            seen.add(cid)
    return response.model_copy(update={"parts": parts}) if changed else response


def _validation_errors(e: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [
        {"type": err["type"], "loc": list(err["loc"]), "msg": err["msg"], "input": err.get("input")}
        for err in e.errors(include_url=False)
    ]


class AgentLoop(Generic[OutputT]):
    """One run of an agent as a state machine. ``steps()`` yields operations; ``result`` is set at the end."""

    def __init__(self, agent: AgentSpec | SupportsSpec, run: RunInput, deps: Any, model_name: str) -> None:
        self.agent: AgentSpec = spec_of(agent)
        self.run = run
        self.deps = deps
        self.model_name = model_name
        self.usage = Usage()
        self.limits = run.usage_limits or UsageLimits()
        self.messages: list[ModelMessage] = list(run.message_history)
        self.new_from = len(self.messages)
        self.result: AgentRunResult[OutputT] | None = None
        self.turn = 0
        self._tool_retries: dict[str, int] = {}
        self._output_retries = 0

    def ctx(self, **kw: Any) -> RunContext[Any]:
        return RunContext(
            deps=self.deps,
            run_id=self.run.run_id,
            prompt=self.run.prompt,
            usage=Usage(**vars(self.usage)),
            model_name=self.model_name,
            **kw,
        )

    async def _instructions(self) -> str | None:
        parts: list[str] = []
        for ins in self.agent.instructions:
            if isinstance(ins, str):
                parts.append(ins)
            else:
                takes_ctx = bool(inspect.signature(ins).parameters)
                value = await _maybe_await(ins(self.ctx()) if takes_ctx else ins())
                if value:
                    parts.append(str(value))
        return "\n\n".join(parts) if parts else None

    def _params(self) -> ModelRequestParameters:
        out = self.agent.output
        return ModelRequestParameters(
            function_tools=[t.definition for t in self.agent.tools.values()],
            output_tools=out.tool_definitions,
            allow_text_output=out.allow_text,
            native_output=out.native_definition,
        )

    async def steps(self) -> AsyncGenerator[Operation, Any]:
        first: list[Any] = []
        if not self.messages:
            first.extend(SystemPromptPart(content=text) for text in self.agent.system_prompts)
        if self.run.content is not None:
            first.append(UserPromptPart(content=list(self.run.content)))
        elif self.run.prompt is not None:
            first.append(UserPromptPart(content=self.run.prompt))
        next_request: list[Any] = first
        if not next_request and self.messages and isinstance(self.messages[-1], ModelRequest):
            next_request = list(self.messages.pop().parts)  # continue a history that ends with a request
        settings = self._settings()
        params = self._params()
        while True:
            self.turn += 1
            self.messages.append(ModelRequest(parts=next_request, instructions=await self._instructions()))
            self.limits.check_before_request(self.usage)
            response: ModelResponse = yield ModelStep(
                key=model_key(self.turn),
                turn=self.turn,
                model_name=self.model_name,
                messages=list(self.messages),
                settings=settings,
                params=params,
            )
            response = _normalize_ids(response, self.turn)
            self.messages.append(response)
            self.usage.add_response(response.usage)
            self.limits.check_after_response(self.usage)
            parts, final, function_calls = await self._classify(response)
            if function_calls:
                inner = self._run_tools(function_calls)
                to_send: Any = None
                while True:
                    try:
                        item = await inner.asend(to_send)
                    except StopAsyncIteration:
                        break
                    to_send = None
                    if isinstance(item, _Emit):
                        parts.append(item.part)
                    else:
                        to_send = yield item
            if final is not None:
                if parts:
                    self.messages.append(ModelRequest(parts=parts))
                self.result = AgentRunResult(
                    final.output, self.run.run_id, list(self.messages), self.new_from, self.usage
                )
                return
            next_request = parts

    def _settings(self) -> ModelSettings | None:
        merged: dict[str, Any] = {}
        merged.update(self.agent.model_settings or {})
        merged.update(self.run.model_settings or {})
        return ModelSettings(**merged) if merged else None  # type: ignore[typeddict-item]

    async def _classify(self, response: ModelResponse) -> tuple[list[Any], _Final | None, list[ToolCallPart]]:
        """Split a response into: parts to send back, the final output (if any), function calls to run."""
        calls = response.tool_calls
        output_schema = self.agent.output
        parts: list[Any] = []
        # The first valid output tool call ends the run; other calls in that response are not executed.
        for call in calls:
            otool = output_schema.tool(call.tool_name)
            if otool is None:
                continue
            outcome = await self._validate_output_call(otool, call)
            if isinstance(outcome, RetryPromptPart):
                parts.append(outcome)
                continue
            answered = {p.tool_call_id for p in parts}  # invalid output calls before this one: their retry prompt
            for other in calls:
                if other.tool_call_id in answered:
                    continue  # every call gets exactly one answer, or providers reject the history
                content = FINAL_PROCESSED if other is call else NOT_EXECUTED
                parts.append(
                    ToolReturnPart(tool_name=other.tool_name, content=content, tool_call_id=other.tool_call_id)
                )
            return parts, _Final(outcome), []
        function_calls = [c for c in calls if output_schema.tool(c.tool_name) is None]
        if function_calls or calls:
            return parts, None, function_calls
        text = response.text
        if text is not None and (output_schema.allow_text or output_schema.native_definition is not None):
            value = await self._validate_text_output(text)
            if isinstance(value, RetryPromptPart):
                return [value], None, []
            return [], _Final(value), []
        message = TEXT_NOT_ALLOWED if text is not None else EMPTY_RESPONSE
        self._bump_output_retry(message)
        return [RetryPromptPart(content=message)], None, []

    async def _run_tools(self, calls: Sequence[ToolCallPart]) -> AsyncGenerator[Any, Any]:
        tools = self.agent.tools
        ready: list[tuple[ToolCallPart, Tool, dict[str, Any]]] = []
        results: dict[str, Any] = {}
        for call in calls:
            tool = tools.get(call.tool_name)
            if tool is None:
                names = ", ".join(sorted([*tools, *self.agent.output.names])) or "none"
                results[call.tool_call_id] = self._tool_retry(
                    call, f"Unknown tool name: {call.tool_name!r}. Available tools: {names}", None
                )
                continue
            try:
                args = call.args_as_dict()
                tool.validate_args(args)
            except pydantic.ValidationError as e:
                results[call.tool_call_id] = self._tool_retry(call, _validation_errors(e), tool)
                continue
            except ValueError as e:
                results[call.tool_call_id] = self._tool_retry(call, f"Invalid JSON arguments: {e}", tool)
                continue
            ready.append((call, tool, args))

        plain = [(c, t, a) for c, t, a in ready if not t.requires_approval]
        gated = [(c, t, a) for c, t, a in ready if t.requires_approval]
        approved: list[tuple[ToolCallPart, Tool, dict[str, Any]]] = []
        if gated:
            waits = [
                WaitStep(
                    key=approval_key(self.turn, c.tool_call_id),
                    turn=self.turn,
                    reason="approval",
                    tool_name=c.tool_name,
                    args=a,
                    tool_call_id=c.tool_call_id,
                )
                for c, _, a in gated
            ]
            decisions: list[Decision] = yield (waits[0] if len(waits) == 1 else Batch(tuple(waits)))
            if len(waits) == 1:
                decisions = [decisions]  # type: ignore[list-item]
            for (c, t, a), d in zip(gated, decisions, strict=True):
                if d.approved:
                    approved.append((c, t, a))
                else:
                    note = f" Note from the reviewer: {d.note}" if d.note else ""
                    results[c.tool_call_id] = ToolReturnPart(
                        tool_name=c.tool_name,
                        content=f"The user denied this tool call; it was not run.{note}",
                        tool_call_id=c.tool_call_id,
                    )
        to_run = plain + approved
        if to_run:
            self.limits.check_tool_calls(self.usage, len(to_run))
            self.usage.tool_calls += len(to_run)
            ops = [
                ToolStep(
                    key=tool_key(self.turn, c.tool_call_id),
                    turn=self.turn,
                    tool_name=c.tool_name,
                    args=a,
                    tool_call_id=c.tool_call_id,
                    side_effects=t.side_effects,
                    idempotency_key=f"{self.run.run_id}/{tool_key(self.turn, c.tool_call_id)}",
                    retry=self._tool_retries.get(t.name, 0),
                    usage=Usage(**vars(self.usage)),
                    model_name=self.model_name,
                )
                for c, t, a in to_run
            ]
            outcomes: list[ToolOutcome] = yield (ops[0] if len(ops) == 1 else Batch(tuple(ops)))
            if len(ops) == 1:
                outcomes = [outcomes]  # type: ignore[list-item]
            unknown_waits: list[tuple[ToolCallPart, Tool, dict[str, Any]]] = []
            for (c, t, a), outcome in zip(to_run, outcomes, strict=True):
                if outcome.kind == "unknown" and t.on_unknown == "wait":
                    unknown_waits.append((c, t, a))
                    continue
                results[c.tool_call_id] = self._outcome_part(c, t, outcome)
            for c, _, a in unknown_waits:
                decision: Decision = yield WaitStep(
                    key=unknown_key(self.turn, c.tool_call_id),
                    turn=self.turn,
                    reason="unknown_outcome",
                    tool_name=c.tool_name,
                    args=a,
                    tool_call_id=c.tool_call_id,
                )
                if decision.approved:
                    text = "A human confirmed that this call did happen."
                else:
                    text = "A human confirmed that this call did NOT happen."
                if decision.note:
                    text += f" Note: {decision.note}"
                results[c.tool_call_id] = ToolReturnPart(
                    tool_name=c.tool_name, content=text, tool_call_id=c.tool_call_id
                )
        for call in calls:
            yield _Emit(results[call.tool_call_id])

    def _outcome_part(self, call: ToolCallPart, tool: Tool, outcome: ToolOutcome) -> Any:
        if outcome.kind == "return":
            self._tool_retries.pop(tool.name, None)
            return ToolReturnPart(
                tool_name=call.tool_name,
                content=tool.load_result(outcome.value),
                tool_call_id=call.tool_call_id,
            )
        if outcome.kind == "retry":
            return self._tool_retry(call, outcome.message or "", tool)
        if outcome.kind == "unknown":
            return ToolReturnPart(tool_name=call.tool_name, content=UNKNOWN_OUTCOME, tool_call_id=call.tool_call_id)
        if outcome.kind == "denied":
            return ToolReturnPart(
                tool_name=call.tool_name, content=outcome.message or "denied", tool_call_id=call.tool_call_id
            )
        raise ToolError(
            f"tool {call.tool_name!r} failed: {outcome.message}",
            tool_name=call.tool_name,
            error_type=outcome.error_type or "Exception",
            traceback=outcome.traceback,
        )

    def _tool_retry(self, call: ToolCallPart, content: Any, tool: Tool | None) -> RetryPromptPart:
        name = call.tool_name
        count = self._tool_retries.get(name, 0) + 1
        self._tool_retries[name] = count
        budget = tool.retries if tool is not None and tool.retries is not None else self.agent.retries
        if count > budget:
            if isinstance(content, str):
                detail, body = content, content
            else:
                detail = RetryPromptPart(content=content).model_response()
                body = json.dumps(content, default=str)
            raise UnexpectedModelBehavior(
                f"tool {name!r} exceeded its retry budget of {budget}; last error: {detail}", body=body
            )
        return RetryPromptPart(content=content, tool_name=name, tool_call_id=call.tool_call_id)

    def _bump_output_retry(self, detail: str) -> None:
        self._output_retries += 1
        if self._output_retries > self.agent.output_retries:
            raise UnexpectedModelBehavior(
                f"exceeded the output retry budget of {self.agent.output_retries}; last error: {detail}"
            )

    async def _validate_output_call(self, otool: OutputTool, call: ToolCallPart) -> Any:
        try:
            value = otool.validate_args(call.args if isinstance(call.args, str) else call.args_as_dict())
        except pydantic.ValidationError as e:
            errors = _validation_errors(e)
            self._bump_output_retry(RetryPromptPart(content=errors).model_response())
            return RetryPromptPart(content=errors, tool_name=call.tool_name, tool_call_id=call.tool_call_id)
        return await self._run_validators(value, call)

    async def _validate_text_output(self, text: str) -> Any:
        out = self.agent.output
        if out.native_definition is not None:
            try:
                value = out.tools[0].validate_args(text)
            except pydantic.ValidationError as e:
                errors = _validation_errors(e)
                self._bump_output_retry(RetryPromptPart(content=errors).model_response())
                return RetryPromptPart(content=errors)
            return await self._run_validators(value, None)
        return await self._run_validators(text, None)

    async def _run_validators(self, value: Any, call: ToolCallPart | None) -> Any:
        for validator in self.agent.output_validators:
            takes_ctx = len(inspect.signature(validator).parameters) > 1
            try:
                ctx = self.ctx(retry=self._output_retries, tool_name=call.tool_name if call else None)
                value = await _maybe_await(validator(ctx, value) if takes_ctx else validator(value))
            except ModelRetry as e:
                self._bump_output_retry(e.message)
                return RetryPromptPart(
                    content=e.message,
                    tool_name=call.tool_name if call else None,
                    tool_call_id=call.tool_call_id if call else None,
                )
        return value


@dataclass
class _Final:
    output: Any


@dataclass
class _Emit:
    part: Any


Execute = Callable[[Step], Awaitable[StepResult]]
ExecuteBatch = Callable[[list[Step]], Awaitable[Sequence[StepResult]]]


async def drive(
    loop: AgentLoop[OutputT], execute: Execute, execute_batch: ExecuteBatch | None = None
) -> AgentRunResult[OutputT]:
    """Run ``loop`` to the end, executing each operation with ``execute``.

    A ``Batch`` goes to ``execute_batch`` whole when given (durable engines hand it to their store as one batch);
    otherwise its steps run concurrently, every one awaited even when one fails (so the results that did arrive
    are recorded), then the first error is raised.
    """
    import asyncio

    gen = loop.steps()
    to_send: Any = None
    try:
        while True:
            try:
                op = await gen.asend(to_send)
            except StopAsyncIteration:
                break
            if isinstance(op, Batch) and execute_batch is not None:
                to_send = list(await execute_batch(list(op.steps)))
            elif isinstance(op, Batch):
                results = await asyncio.gather(*(execute(s) for s in op.steps), return_exceptions=True)
                for r in results:
                    if isinstance(r, BaseException):
                        raise r
                to_send = list(results)
            else:
                to_send = await execute(op)
    finally:
        await gen.aclose()
    if loop.result is None:  # pragma: no cover - the loop always ends with a result or an exception
        raise AgentRunError("the run ended without an output")
    return loop.result
