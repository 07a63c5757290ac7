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
from perdure.messages import (
    BinaryContent,
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from perdure.models import ModelRequestParameters, StreamEvent, ThinkingDelta, ToolCallDelta, ToolDefinition
from perdure.models.anthropic import AnthropicModel

from .fake_server import (
    FakeProviderServer,
    anthropic_block_stream,
    anthropic_message,
    anthropic_message_blocks,
    anthropic_stream,
)

WEATHER = ToolDefinition(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
FINAL = ToolDefinition(
    name="final_result",
    description="The answer.",
    parameters_json_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
    kind="output",
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


# --- extended thinking --------------------------------------------------------------------------------------

# Provenance: "Extended thinking" → "How extended thinking works" (a thinking block with its signature before the
# text) and "Thinking redaction" (a redacted_thinking block carrying encrypted data); signatures are opaque
# base64 strings of the documented shape.
SIGNATURE = "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve/op91XWHOEBLLqIOMfFG/UvLEczmEsUjavL3zaDQ=="
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB9URj2pLmN3kF8="
THINKING_THEN_CALL = [
    {
        "type": "thinking",
        "thinking": "The user wants Paris weather; I should call get_weather.",
        "signature": SIGNATURE,
    },
    {"type": "redacted_thinking", "data": REDACTED},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
]


def test_thinking_budget_turns_on_extended_thinking(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message_blocks(THINKING_THEN_CALL, stop_reason="tool_use"))
    params = ModelRequestParameters([WEATHER], output_tools=[FINAL], allow_text_output=False)

    response = request(model_for(server), ask("Weather in Paris?"), {"thinking_budget": 2048}, params)

    assert response.parts == [
        ThinkingPart(
            content="The user wants Paris weather; I should call get_weather.",
            signature=SIGNATURE,
            provider_name="anthropic",
        ),
        ThinkingPart(signature=REDACTED, redacted=True, provider_name="anthropic"),
        ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="toolu_01"),
    ]
    assert response.thinking == "The user wants Paris weather; I should call get_weather."
    body = server.last_body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2048 + 4096  # room for the answer beyond the thinking budget
    # The API refuses tool_choice "any" with thinking on: the model is left to choose.
    assert "tool_choice" not in body


@pytest.mark.parametrize(("budget", "config"), [(0, {"type": "disabled"}), (-1, {"type": "adaptive"}), (1024, None)])
def test_thinking_budget_values(server: FakeProviderServer, budget: int, config: dict[str, Any] | None) -> None:
    server.enqueue(anthropic_message("ok"))

    request(model_for(server), ask("hi"), {"thinking_budget": budget, "max_tokens": 3000})

    assert server.last_body["thinking"] == (config or {"type": "enabled", "budget_tokens": budget})
    assert server.last_body["max_tokens"] == 3000


def test_thinking_goes_back_signed_before_the_tool_use_blocks(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message_blocks(THINKING_THEN_CALL, stop_reason="tool_use"), anthropic_message("Sunny."))
    model = model_for(server)
    params = ModelRequestParameters([WEATHER])
    first = request(model, ask("Weather in Paris?"), {"thinking_budget": 2048}, params)

    history: list[ModelMessage] = [
        *ask("Weather in Paris?"),
        first,
        ModelRequest(parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="toolu_01")]),
    ]
    request(model, history, {"thinking_budget": 2048}, params)

    assistant = server.last_body["messages"][1]
    assert assistant == {"role": "assistant", "content": THINKING_THEN_CALL}


def test_another_providers_reasoning_is_not_sent_to_anthropic(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("ok"))
    history: list[ModelMessage] = [
        *ask("hi"),
        ModelResponse(
            parts=[
                ThinkingPart(content="deepseek reasoning", provider_name="openai"),
                ThinkingPart(content="gemini thought", signature="c2ln", provider_name="google"),
                ThinkingPart(content="unsigned", provider_name="anthropic"),
                TextPart(content="hello"),
            ]
        ),
        *ask("again"),
    ]

    request(model_for(server), history)

    assert server.last_body["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}


# Provenance: "Extended thinking" → "Streaming thinking": the thinking block opens empty, its text arrives as
# thinking_delta events and its signature as one signature_delta just before content_block_stop.
def thinking_stream() -> Any:
    return anthropic_block_stream(
        [
            (
                {"type": "thinking", "thinking": ""},
                [
                    {"type": "thinking_delta", "thinking": "Paris weather: "},
                    {"type": "thinking_delta", "thinking": "call the tool."},
                    {"type": "signature_delta", "signature": SIGNATURE},
                ],
            ),
            ({"type": "redacted_thinking", "data": REDACTED}, []),
            (
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}},
                [{"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}],
            ),
        ],
        stop_reason="tool_use",
    )


def test_streamed_thinking_is_assembled_and_sent_back(server: FakeProviderServer) -> None:
    server.enqueue(thinking_stream(), anthropic_stream(["Sunny."]))
    model = model_for(server)
    params = ModelRequestParameters([WEATHER])

    events, first = stream(model, ask("Weather in Paris?"), {"thinking_budget": 2048}, params)

    assert [e.content for e in events if isinstance(e, ThinkingDelta)] == [
        "",
        "Paris weather: ",
        "call the tool.",
        "",
        "",
    ]
    assert first.parts[:2] == [
        ThinkingPart(content="Paris weather: call the tool.", signature=SIGNATURE, provider_name="anthropic"),
        ThinkingPart(signature=REDACTED, redacted=True, provider_name="anthropic"),
    ]
    assert first.tool_calls[0].args_as_dict() == {"city": "Paris"}

    history: list[ModelMessage] = [
        *ask("Weather in Paris?"),
        first,
        ModelRequest(parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="toolu_01")]),
    ]
    _, second = stream(model, history, {"thinking_budget": 2048}, params)

    assert second.text == "Sunny."
    assert server.last_body["stream"] is True
    assert server.last_body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Paris weather: call the tool.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": REDACTED},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ]


# --- files in prompts and tool results (the mapping lives in models/_multimodal.py) ----------------------------


def test_images_in_a_prompt_and_a_tool_result_reach_anthropic(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("A cat and a chart."))
    png = BinaryContent(data=b"\x89PNG\r\n\x1a\n", media_type="image/png")
    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=["What is this?", ImageUrl(url="https://example.com/cat.jpg")])]),
        ModelResponse(parts=[ToolCallPart(tool_name="chart", args={}, tool_call_id="toolu_1")]),
        ModelRequest(parts=[ToolReturnPart(tool_name="chart", content=png, tool_call_id="toolu_1")]),
    ]

    request(model_for(server), history)

    messages = server.last_body["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    (result,) = messages[2]["content"]
    assert result["type"] == "tool_result"
    assert result["content"][0]["type"] == "image"
    assert result["content"][0]["source"]["media_type"] == "image/png"


# --- request controls ---------------------------------------------------------------------------------------


def test_prompt_caching_puts_breakpoints_on_instructions_tools_and_the_last_message(
    server: FakeProviderServer,
) -> None:
    # Provenance: "Prompt caching": cache_control {"type": "ephemeral", "ttl": ...} on the system text block,
    # the last tool definition and the last content block of the last message.
    server.enqueue(anthropic_message("ok"))
    history = [ModelRequest(parts=[UserPromptPart(content="Weather in Paris?")], instructions="Be brief.")]

    request(
        model_for(server),
        history,
        {"anthropic_cache": True, "anthropic_cache_ttl": "1h"},
        ModelRequestParameters([WEATHER, FINAL]),
    )

    body = server.last_body
    mark = {"type": "ephemeral", "ttl": "1h"}
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": mark}]
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][1]["cache_control"] == mark
    assert body["messages"][-1]["content"][-1] == {"type": "text", "text": "Weather in Paris?", "cache_control": mark}


def test_prompt_caching_of_chosen_parts_only(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("ok"))
    history = [ModelRequest(parts=[UserPromptPart(content="hi")], instructions="Be brief.")]

    request(model_for(server), history, {"anthropic_cache": ["tools"]}, ModelRequestParameters([WEATHER]))

    body = server.last_body
    assert body["system"] == "Be brief."
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["messages"][-1]["content"][-1]


def test_request_controls_reach_the_messages_api(server: FakeProviderServer) -> None:
    # Provenance: the Messages API create parameters: tools[].strict, metadata.user_id, service_tier, top_k.
    server.enqueue(anthropic_message("ok"))
    settings = {
        "strict_tools": True,
        "top_k": 5,
        "user": "user-42",
        "service_tier": "standard_only",
        "extra_headers": {"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
        "extra_body": {"context_management": {"edits": []}},
    }

    request(model_for(server), ask("hi"), settings, ModelRequestParameters([WEATHER]))

    body = server.last_body
    assert body["tools"][0]["strict"] is True
    assert body["tools"][0]["input_schema"]["additionalProperties"] is False
    assert body["top_k"] == 5
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["service_tier"] == "standard_only"
    assert body["context_management"] == {"edits": []}
    assert server.requests[-1].headers["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"
