"""Streaming plain runs: text deltas, partial structured output, and tool-call events as they happen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import pydantic

from ._engine import InlineEngine
from ._exceptions import ApprovalRequired, ModelHTTPError, ToolError
from ._loop import AgentLoop, AgentRunResult, drive
from ._ops import ModelStep, Step, StepResult, ToolStep
from ._spec import spec_of
from ._tools import ToolOutcome
from .messages import ModelMessage, ModelResponse
from .models import Model, StreamEvent, TextDelta, ToolCallDelta, request_with_retries
from .usage import Usage

if TYPE_CHECKING:
    from ._spec import AgentSpec, SupportsSpec

__all__ = ["FunctionToolCallEvent", "FunctionToolResultEvent", "ModelResponseEndEvent", "StreamedRunResult"]

OutputT = TypeVar("OutputT")


@dataclass
class FunctionToolCallEvent:
    """A tool is about to run."""

    tool_name: str
    args: dict[str, Any]
    tool_call_id: str
    kind: Literal["tool-call"] = "tool-call"


@dataclass
class FunctionToolResultEvent:
    """A tool finished; ``outcome`` is what was sent to the model."""

    tool_name: str
    tool_call_id: str
    outcome: ToolOutcome
    kind: Literal["tool-result"] = "tool-result"


@dataclass
class ModelResponseEndEvent:
    """A model response is complete."""

    response: ModelResponse
    kind: Literal["response-end"] = "response-end"


RunEvent = StreamEvent | FunctionToolCallEvent | FunctionToolResultEvent | ModelResponseEndEvent
_DONE = object()


class StreamedRunResult(Generic[OutputT]):
    """A run in progress. Iterate one ``stream_*`` method, then read ``output``, ``usage()``, the messages."""

    def __init__(self, loop: AgentLoop[OutputT]) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[AgentRunResult[OutputT]] | None = None
        self._consumed = False

    async def stream_events(self) -> AsyncIterator[RunEvent]:
        """Every event of the run: text and tool-call deltas, tool calls and results, response ends."""
        if self._consumed:
            raise RuntimeError("a streamed run can be consumed only once")
        self._consumed = True
        while True:
            item = await self._queue.get()
            if item is _DONE:
                break
            yield item
        await self.get_output()

    async def stream_text(self, *, delta: bool = False) -> AsyncIterator[str]:
        """The model's text: each delta, or (the default) the text so far of the current response."""
        text = ""
        async for event in self.stream_events():
            if isinstance(event, TextDelta):
                text += event.content
                yield event.content if delta else text
            elif isinstance(event, ModelResponseEndEvent):
                text = ""

    async def stream_output(self) -> AsyncIterator[OutputT]:
        """The output as it forms: partial structured output validated as it streams, then the final one."""
        output = self._loop.agent.output
        text = ""
        args: dict[int, str] = {}
        names: dict[int, str] = {}
        last: Any = None
        async for event in self.stream_events():
            value: Any = None
            if isinstance(event, TextDelta) and output.native_definition is not None:
                text += event.content  # native structured output arrives as JSON text
                with suppress(pydantic.ValidationError, ValueError):
                    value = output.tools[0].validate_args(text, partial=True)
            elif isinstance(event, TextDelta) and output.allow_text:
                text += event.content
                value = text
            elif isinstance(event, ToolCallDelta):
                if event.tool_name:
                    names[event.index] = event.tool_name
                args[event.index] = args.get(event.index, "") + event.args_delta
                otool = output.tool(names.get(event.index, ""))
                if otool is not None and args[event.index]:
                    with suppress(pydantic.ValidationError, ValueError):
                        value = otool.validate_args(args[event.index], partial=True)
            elif isinstance(event, ModelResponseEndEvent):
                text, args, names = "", {}, {}
            if value is not None and value != last:
                last = value
                yield value
        final = await self.get_output()
        if final != last:
            yield final

    async def get_output(self) -> OutputT:
        """Wait for the run to finish; its output."""
        assert self._task is not None
        return (await self._task).output

    @property
    def output(self) -> OutputT:
        return self._result().output

    def _result(self) -> AgentRunResult[OutputT]:
        if self._task is None or not self._task.done():
            raise RuntimeError("the run has not finished: consume a stream or await get_output() first")
        return self._task.result()

    def usage(self) -> Usage:
        return self._loop.usage

    def all_messages(self) -> list[ModelMessage]:
        return self._result().all_messages()

    def new_messages(self) -> list[ModelMessage]:
        return self._result().new_messages()


@asynccontextmanager
async def run_streamed(
    agent: AgentSpec | SupportsSpec, loop: AgentLoop[OutputT], model: Model, deps: Any
) -> AsyncIterator[StreamedRunResult[OutputT]]:
    result: StreamedRunResult[OutputT] = StreamedRunResult(loop)
    inline = InlineEngine(agent, model, deps=deps, run_id=loop.run.run_id, prompt=loop.run.prompt)
    emit = result._queue.put_nowait

    async def execute(step: Step) -> StepResult:
        if isinstance(step, ModelStep):
            return await _stream_model(step)
        if isinstance(step, ToolStep):
            emit(FunctionToolCallEvent(step.tool_name, step.args, step.tool_call_id))
            outcome = await inline.execute(step)
            assert isinstance(outcome, ToolOutcome)
            emit(FunctionToolResultEvent(step.tool_name, step.tool_call_id, outcome))
            return outcome
        return await inline.execute(step)

    async def _stream_model(step: ModelStep) -> ModelResponse:
        async def send() -> ModelResponse:
            started = False
            try:
                async with model.request_stream(step.messages, step.settings, step.params) as stream:
                    async for event in stream:
                        started = True
                        emit(event)
                    return stream.get()
            except ModelHTTPError as e:
                if not (started and e.transient):
                    raise
                # The consumer has seen part of this response: a retry would stream it twice.
                raise ModelHTTPError(
                    f"{e.message} (after the response started streaming, so it is not retried)",
                    status_code=e.status_code,
                    model_name=e.model_name,
                    transient=False,
                ) from e

        from .observability._steps import model_step

        with model_step(model, step) as span:
            response = await request_with_retries(send, spec_of(agent).retry_config, on_retry=span.on_retry)
            span.response(response)
        emit(ModelResponseEndEvent(response))
        return response

    async def main() -> AgentRunResult[OutputT]:
        from .observability._spans import run_attempt

        run = loop.run
        try:
            with run_attempt(
                agent, run_id=run.run_id, engine="inline", model=model.model_name, prompt=run.prompt
            ) as obs:
                try:
                    outcome = await drive(loop, execute)
                except (ToolError, ApprovalRequired) as e:
                    final = inline.finish(e)
                    if final is e:
                        raise
                    raise final from None
                obs.set_result(outcome)
                return outcome
        finally:
            emit(_DONE)

    result._task = asyncio.create_task(main())
    try:
        yield result
        await result._task
    finally:
        if not result._task.done():
            result._task.cancel()
            with suppress(asyncio.CancelledError):
                await result._task
