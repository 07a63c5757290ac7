"""Streaming plain runs: text deltas, partial structured output, tool-call events."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from perdure import Agent, ModelHTTPError, ToolError
from perdure.messages import ModelMessage, ModelRequest, ToolReturnPart
from perdure.models import RetryConfig, TextDelta, ToolCallDelta
from perdure.models.function import AgentInfo, DeltaToolCall, FunctionModel

from ._scripts import call, text


async def story(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    for piece in ["Once ", "upon ", "a time."]:
        yield piece


def test_stream_text_deltas() -> None:
    agent = Agent(FunctionModel(stream_fn=story))

    async def main() -> tuple[list[str], str]:
        async with agent.run_stream("a story") as stream:
            deltas = [d async for d in stream.stream_text(delta=True)]
            return deltas, stream.output

    deltas, output = asyncio.run(main())
    assert deltas == ["Once ", "upon ", "a time."]
    assert output == "Once upon a time."


def test_stream_text_cumulative() -> None:
    agent = Agent(FunctionModel(stream_fn=story))

    async def main() -> list[str]:
        async with agent.run_stream("a story") as stream:
            return [t async for t in stream.stream_text()]

    assert asyncio.run(main()) == ["Once ", "Once upon ", "Once upon a time."]


def test_streamed_run_has_messages_and_usage() -> None:
    agent = Agent(FunctionModel(stream_fn=story))

    async def main() -> Any:
        async with agent.run_stream("a story") as stream:
            assert await stream.get_output() == "Once upon a time."
            return stream

    stream = asyncio.run(main())
    [request, response] = stream.all_messages()
    assert isinstance(request, ModelRequest)
    assert response.text == "Once upon a time."  # type: ignore[union-attr]
    assert stream.new_messages() == stream.all_messages()
    usage = stream.usage()
    assert usage.requests == 1
    assert usage.output_tokens == 4  # FunctionModel estimates tokens as words
    assert usage.input_tokens > 0


def test_a_stream_is_consumed_once() -> None:
    agent = Agent(FunctionModel(stream_fn=story))

    async def main() -> None:
        async with agent.run_stream("a story") as stream:
            [_ async for _ in stream.stream_text()]
            with pytest.raises(RuntimeError, match="only once"):
                [_ async for _ in stream.stream_text()]

    asyncio.run(main())


class Profile(TypedDict, total=False):
    name: str
    city: str


def test_stream_output_yields_partial_structured_output() -> None:
    async def profile(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[dict[int, DeltaToolCall]]:
        assert [t.name for t in info.output_tools] == ["final_result"]
        yield {0: DeltaToolCall(name="final_result", tool_call_id="out")}
        yield {0: DeltaToolCall(json_args='{"name": "Ad')}
        yield {0: DeltaToolCall(json_args='a", "ci')}
        yield {0: DeltaToolCall(json_args='ty": "London"}')}

    agent = Agent(FunctionModel(stream_fn=profile), output_type=Profile)

    async def main() -> tuple[list[Any], Any]:
        async with agent.run_stream("who?") as stream:
            return [p async for p in stream.stream_output()], stream.output

    partials, output = asyncio.run(main())
    assert partials == [{"name": "Ad"}, {"name": "Ada"}, {"name": "Ada", "city": "London"}]
    assert output == {"name": "Ada", "city": "London"}


class Point(BaseModel):
    x: int
    y: int


def test_stream_output_of_a_model_yields_once_it_validates() -> None:
    async def point(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[dict[int, DeltaToolCall]]:
        yield {0: DeltaToolCall(name="final_result", json_args='{"x": 1')}
        yield {0: DeltaToolCall(json_args=', "y": 2}')}

    agent = Agent(FunctionModel(stream_fn=point), output_type=Point)

    async def main() -> list[Any]:
        async with agent.run_stream("a point") as stream:
            return [p async for p in stream.stream_output()]

    assert asyncio.run(main()) == [Point(x=1, y=2)]


def test_stream_output_of_text() -> None:
    agent = Agent(FunctionModel(stream_fn=story))

    async def main() -> list[Any]:
        async with agent.run_stream("a story") as stream:
            return [p async for p in stream.stream_output()]

    assert asyncio.run(main()) == ["Once ", "Once upon ", "Once upon a time."]


def test_stream_events_include_tool_calls_and_results() -> None:
    async def model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        if len(messages) == 1:
            yield {0: DeltaToolCall(name="add", tool_call_id="c1")}
            yield {0: DeltaToolCall(json_args='{"a": 1, ')}
            yield {0: DeltaToolCall(json_args='"b": 2}')}
        else:
            yield "3"

    agent = Agent(FunctionModel(stream_fn=model))

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> list[Any]:
        async with agent.run_stream("1+2") as stream:
            return [e async for e in stream.stream_events()]

    events = asyncio.run(main())
    kinds = [e.kind for e in events]
    assert kinds == [
        "tool-call-delta",
        "tool-call-delta",
        "tool-call-delta",
        "response-end",
        "tool-call",
        "tool-result",
        "text-delta",
        "response-end",
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert "".join(d.args_delta for d in deltas) == '{"a": 1, "b": 2}'
    tool_call = events[4]
    assert (tool_call.tool_name, tool_call.args, tool_call.tool_call_id) == ("add", {"a": 1, "b": 2}, "c1")
    tool_result = events[5]
    assert tool_result.tool_call_id == "c1"
    assert tool_result.outcome.kind == "return"
    assert tool_result.outcome.value == 3
    assert isinstance(events[6], TextDelta)
    assert events[3].response.tool_calls[0].args_as_dict() == {"a": 1, "b": 2}


def test_streaming_without_stream_fn_replays_the_response() -> None:
    turns = [call("add", {"a": 2, "b": 2}, "c1"), text("4")]

    def answer(messages: list[ModelMessage], info: AgentInfo) -> Any:
        return turns.pop(0)

    agent = Agent(FunctionModel(answer))

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> Any:
        async with agent.run_stream("2+2") as stream:
            texts = [t async for t in stream.stream_text(delta=True)]
            return texts, stream

    texts, stream = asyncio.run(main())
    assert texts == ["4"]
    assert stream.all_messages()[2] == ModelRequest(
        parts=[ToolReturnPart(tool_name="add", content=4, tool_call_id="c1")]
    )


def test_streamed_run_errors_surface_from_the_stream() -> None:
    turns = [call("boom", {}, "c1")]
    agent = Agent(FunctionModel(lambda m, i: turns.pop(0)))

    @agent.tool_plain
    def boom() -> str:
        raise RuntimeError("kaboom")

    async def main() -> None:
        async with agent.run_stream("x") as stream:
            [_ async for _ in stream.stream_text()]

    with pytest.raises(ToolError, match="kaboom") as info:
        asyncio.run(main())
    assert isinstance(info.value.__cause__, RuntimeError)


def test_output_is_unavailable_before_the_run_finishes() -> None:
    gate: dict[str, asyncio.Event] = {}

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        await gate["go"].wait()
        yield "done"

    agent = Agent(FunctionModel(stream_fn=slow))

    async def main() -> str:
        gate["go"] = asyncio.Event()
        async with agent.run_stream("x") as stream:
            with pytest.raises(RuntimeError, match="has not finished"):
                stream.output  # noqa: B018 - the access is the test
            gate["go"].set()
            return await stream.get_output()

    assert asyncio.run(main()) == "done"


def test_a_transient_error_before_the_stream_starts_is_retried() -> None:
    attempts: list[int] = []

    async def flaky(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelHTTPError("overloaded", status_code=529, transient=True)
        yield "fine"

    agent = Agent(FunctionModel(stream_fn=flaky), retry_config=RetryConfig(initial_delay=0.0))

    async def main() -> list[str]:
        async with agent.run_stream("x") as stream:
            return [t async for t in stream.stream_text(delta=True)]

    assert asyncio.run(main()) == ["fine"]
    assert len(attempts) == 2


def test_a_transient_error_mid_stream_is_not_retried() -> None:
    attempts: list[int] = []

    async def broken(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        attempts.append(1)
        yield "partial "
        raise ModelHTTPError("connection reset", transient=True)

    agent = Agent(FunctionModel(stream_fn=broken), retry_config=RetryConfig(initial_delay=0.0))
    seen: list[str] = []

    async def main() -> None:
        async with agent.run_stream("x") as stream:
            async for t in stream.stream_text(delta=True):
                seen.append(t)

    with pytest.raises(ModelHTTPError, match="not retried") as info:
        asyncio.run(main())
    assert not info.value.transient
    assert seen == ["partial "]
    assert len(attempts) == 1


def test_stream_output_of_native_structured_output() -> None:
    async def profile(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        for piece in ['{"name": "Gr', 'ace", "city": "NY', 'C"}']:
            yield piece

    agent = Agent(FunctionModel(stream_fn=profile), output_type=Profile, output_mode="native")

    async def main() -> list[Any]:
        async with agent.run_stream("who?") as stream:
            return [p async for p in stream.stream_output()]

    assert asyncio.run(main()) == [
        {"name": "Gr"},
        {"name": "Grace", "city": "NY"},
        {"name": "Grace", "city": "NYC"},
    ]


def test_stream_output_with_a_union_of_output_tools() -> None:
    class Found(TypedDict, total=False):
        name: str

    class Missing(TypedDict, total=False):
        reason: str

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[dict[int, DeltaToolCall]]:
        yield {0: DeltaToolCall(name="final_result_Missing", json_args='{"reason": "no')}
        yield {0: DeltaToolCall(json_args='t here"}')}

    # mypy cannot join TypedDict classes in a list literal (a mypy bug, not a perdure API limit)
    agent = Agent(FunctionModel(stream_fn=answer), output_type=[Found, Missing])  # type: ignore[list-item]

    async def main() -> list[Any]:
        async with agent.run_stream("find it") as stream:
            return [p async for p in stream.stream_output()]

    assert asyncio.run(main()) == [{"reason": "no"}, {"reason": "not here"}]
