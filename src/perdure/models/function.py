"""``FunctionModel``: a model whose answers come from a Python function — for testing agents offline.

::

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            call = ToolCallPart(tool_name="add", args={"a": 1, "b": 2}, tool_call_id="c1")
            return ModelResponse(parts=[call])
        return ModelResponse(parts=[TextPart(content="3")])

    agent = Agent(FunctionModel(answer), name="calc")
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..messages import ModelMessage, ModelResponse, ToolCallPart
from ..usage import RequestUsage
from . import (
    Model,
    ModelRequestParameters,
    ModelSettings,
    StreamedResponse,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolDefinition,
)

__all__ = ["AgentInfo", "DeltaToolCall", "FunctionModel"]


@dataclass(frozen=True)
class AgentInfo:
    """What the function is told about the request."""

    function_tools: list[ToolDefinition]
    output_tools: list[ToolDefinition]
    allow_text_output: bool
    model_settings: ModelSettings | None
    instructions: str | None


@dataclass
class DeltaToolCall:
    """A piece of a streamed tool call, for ``stream_fn``: yield ``{index: DeltaToolCall(...)}``."""

    name: str | None = None
    json_args: str | None = None
    tool_call_id: str | None = None


def estimate_usage(messages: list[ModelMessage], response: ModelResponse) -> RequestUsage:
    """A deterministic token estimate (words), so usage limits can be tested offline."""

    def words(value: Any) -> int:
        return len(str(value).split())

    inp = 0
    for m in messages:
        for p in m.parts:
            inp += words(getattr(p, "content", "")) + words(getattr(p, "args", ""))
    out = sum(words(p.args_as_json_str()) if isinstance(p, ToolCallPart) else words(p.content) for p in response.parts)
    return RequestUsage(input_tokens=50 + inp, output_tokens=out)


FunctionDef = Callable[[list[ModelMessage], AgentInfo], ModelResponse | Awaitable[ModelResponse]]
StreamFunctionDef = Callable[[list[ModelMessage], AgentInfo], AsyncIterator[str | dict[int, DeltaToolCall]]]


class FunctionModel(Model):
    """A model that calls ``fn(messages, info)`` (sync or async) for each request.

    ``stream_fn(messages, info)`` — an async generator of text deltas (``str``) or
    ``{index: DeltaToolCall}`` — serves streamed requests; without it, streaming replays ``fn``'s answer.
    """

    def __init__(
        self,
        fn: FunctionDef | None = None,
        *,
        stream_fn: StreamFunctionDef | None = None,
        model_name: str | None = None,
    ) -> None:
        if fn is None and stream_fn is None:
            raise TypeError("FunctionModel needs fn, stream_fn, or both")
        self.fn = fn
        self.stream_fn = stream_fn
        self._name = model_name or f"function:{getattr(fn or stream_fn, '__name__', 'fn')}"

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def system(self) -> str:
        return "function"

    @staticmethod
    def _info(
        messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> AgentInfo:
        last = messages[-1] if messages else None
        instructions = getattr(last, "instructions", None)
        return AgentInfo(params.function_tools, params.output_tools, params.allow_text_output, settings, instructions)

    async def request(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> ModelResponse:
        if self.fn is None:
            async with self.request_stream(messages, settings, params) as stream:
                async for _ in stream:
                    pass
                return stream.get()
        result = self.fn(messages, self._info(messages, settings, params))
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ModelResponse), "FunctionModel's function must return a ModelResponse"
        update: dict[str, Any] = {}
        if result.model_name is None:
            update["model_name"] = self._name
        if result.usage == RequestUsage():
            update["usage"] = estimate_usage(messages, result)
        return result.model_copy(update=update) if update else result

    @asynccontextmanager
    async def request_stream(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> AsyncIterator[StreamedResponse]:
        if self.stream_fn is None:
            async with super().request_stream(messages, settings, params) as stream:
                yield stream
            return
        source = self.stream_fn(messages, self._info(messages, settings, params))

        async def events() -> AsyncIterator[StreamEvent]:
            async for item in source:
                if isinstance(item, str):
                    yield TextDelta(0, item)
                else:
                    for index, delta in item.items():
                        yield ToolCallDelta(index + 1, delta.name, delta.json_args or "", delta.tool_call_id)
            # Usage is known once the stream ends, before the consumer reads the response with get().
            if stream.usage == RequestUsage():
                stream.usage = estimate_usage(messages, stream.get())

        stream = StreamedResponse(events(), model_name=self._name)
        yield stream
