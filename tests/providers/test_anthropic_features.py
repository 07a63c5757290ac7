"""AnthropicModel beyond the basics, through the real ``anthropic`` SDK against the loopback server: large
``max_tokens``, server tool blocks in streams, extended thinking, full usage and request controls.

Every canned body follows the documented Messages API wire format (docs.anthropic.com → "Messages",
"Streaming Messages", "Extended thinking", "Prompt caching"); each fixture says which part.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure._exceptions import ModelHTTPError
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from perdure.models import ModelRequestParameters, StreamEvent, ToolCallDelta
from perdure.models.anthropic import AnthropicModel

from .fake_server import (
    FakeProviderServer,
    anthropic_block_stream,
    anthropic_message,
    anthropic_message_blocks,
    anthropic_stream,
)


def model_for(server: FakeProviderServer, name: str = "claude-test") -> AnthropicModel:
    return AnthropicModel(name, base_url=server.anthropic_base_url, api_key="sk-ant-test")


def ask(prompt: str) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)])]


def request(
    model: AnthropicModel, messages: list[ModelMessage], settings: Any = None, params: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: AnthropicModel, messages: list[ModelMessage], settings: Any = None, params: Any = None
) -> tuple[list[StreamEvent], ModelResponse]:
    async def go() -> tuple[list[StreamEvent], ModelResponse]:
        async with (
            model,
            model.request_stream(messages, settings, params or ModelRequestParameters()) as streamed,
        ):
            events = [event async for event in streamed]
            return events, streamed.get()

    return asyncio.run(go())


# --- bug 2: a large max_tokens ------------------------------------------------------------------------------


def test_a_request_with_a_large_max_tokens_is_streamed_and_assembled(server: FakeProviderServer) -> None:
    # The SDK refuses to send this without streaming ("Streaming is required for operations that may take
    # longer than 10 minutes"); the answer arrives as an SSE stream and comes back as one response.
    server.enqueue(anthropic_stream(["A long ", "essay."], usage=(30, 12)))

    response = request(model_for(server), ask("Write an essay."), settings={"max_tokens": 32000})

    assert response.parts == [TextPart(content="A long essay.")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 12)
    assert response.finish_reason == "end_turn"
    assert len(server.requests) == 1
    assert server.last_body["stream"] is True
    assert server.last_body["max_tokens"] == 32000


def test_a_small_max_tokens_is_not_streamed(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("short"))

    assert request(model_for(server), ask("hi"), settings={"max_tokens": 1000}).text == "short"
    assert "stream" not in server.last_body


def test_an_error_in_the_stream_behind_a_large_request_is_a_model_http_error(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_stream(["Hel"], error={"type": "overloaded_error", "message": "Overloaded"}))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("Write an essay."), settings={"max_tokens": 32000})

    assert (info.value.status_code, info.value.transient) == (529, True)


# --- bug 3: input_json_delta of blocks that are not tool_use ------------------------------------------------

# Provenance: the web search tool's documented stream ("Web search tool" → "Streaming"): a server_tool_use
# block streams its input as input_json_delta exactly like a tool_use block, then the API's own result block.
WEB_SEARCH_THEN_CALL = [
    ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me search."}]),
    (
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}},
        [
            {"type": "input_json_delta", "partial_json": '{"query": "weather'},
            {"type": "input_json_delta", "partial_json": ' Paris"}'},
        ],
    ),
    (
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_01",
            "content": [
                {
                    "type": "web_search_result",
                    "title": "Paris weather",
                    "url": "https://example.com/paris",
                    "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y2IS",
                    "page_age": None,
                }
            ],
        },
        [],
    ),
    (
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
        [
            {"type": "input_json_delta", "partial_json": '{"city": '},
            {"type": "input_json_delta", "partial_json": '"Paris"}'},
        ],
    ),
]


def test_a_server_tool_use_block_in_a_stream_is_not_a_tool_call(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_block_stream(WEB_SEARCH_THEN_CALL, stop_reason="tool_use"))

    events, response = stream(model_for(server), ask("Weather in Paris?"))

    assert {e.index for e in events if isinstance(e, ToolCallDelta)} == {3}
    assert [(c.tool_name, c.tool_call_id, c.args_as_dict()) for c in response.tool_calls] == [
        ("get_weather", "toolu_01", {"city": "Paris"})
    ]
    assert response.text == "Let me search."


def test_a_server_tool_use_block_in_a_message_is_not_a_tool_call(server: FakeProviderServer) -> None:
    server.enqueue(
        anthropic_message_blocks(
            [
                {"type": "text", "text": "Let me search."},
                {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "Paris"}},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            stop_reason="tool_use",
        )
    )

    response = request(model_for(server), ask("Weather in Paris?"))

    assert [c.tool_name for c in response.tool_calls] == ["get_weather"]
