"""OpenAIModel beyond the basics, through the real ``openai`` SDK against the loopback server: errors inside a
200 stream, reasoning, full usage and request controls.

Every canned body follows a documented wire format; each fixture says which.
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
from perdure.models import (
    ModelRequestParameters,
    RetryConfig,
    StreamEvent,
    ThinkingDelta,
    ToolDefinition,
    request_with_retries,
)
from perdure.models.openai import OpenAIModel

from .fake_server import Canned, FakeProviderServer, openai_completion, openai_stream, openai_stream_error


def model_for(server: FakeProviderServer, name: str = "gpt-test", **options: Any) -> OpenAIModel:
    return OpenAIModel(name, base_url=server.openai_base_url, api_key="sk-test", **options)


def ask(prompt: str) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)])]


def request(
    model: OpenAIModel, messages: list[ModelMessage], settings: Any = None, params: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: OpenAIModel, messages: list[ModelMessage], settings: Any = None, params: Any = None
) -> tuple[list[StreamEvent], ModelResponse]:
    async def go() -> tuple[list[StreamEvent], ModelResponse]:
        async with (
            model,
            model.request_stream(messages, settings, params or ModelRequestParameters()) as streamed,
        ):
            events = [event async for event in streamed]
            return events, streamed.get()

    return asyncio.run(go())


def streamed_with_retries(model: OpenAIModel, messages: list[ModelMessage]) -> ModelResponse:
    async def no_sleep(seconds: float) -> None:
        pass

    async def send() -> ModelResponse:
        async with model.request_stream(messages, None, ModelRequestParameters()) as streamed:
            async for _ in streamed:
                pass
            return streamed.get()

    async def go() -> ModelResponse:
        async with model:
            return await request_with_retries(send, RetryConfig(), sleep=no_sleep)

    return asyncio.run(go())


# --- bug 1: an error object inside a 200 stream -------------------------------------------------------------


def test_a_4xx_error_inside_a_200_stream_is_terminal_and_not_retried(server: FakeProviderServer) -> None:
    # The recorded failure: an OpenAI-compatible server hit its context limit after the stream had started.
    server.enqueue(openai_stream_error({"code": 400, "message": "Token limit reached"}, ["Hel"]))

    with pytest.raises(ModelHTTPError) as info:
        streamed_with_retries(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (400, False)
    assert "Token limit reached" in str(info.value)
    assert len(server.requests) == 1  # not retried: the same request would fail the same way


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"code": 502, "message": "Provider returned error"}, 502),
        ({"code": "502", "message": "Provider returned error"}, 502),
        ({"code": "server_error", "message": "Provider disconnected unexpectedly"}, 500),
        ({"message": "The server had an error while processing"}, None),
    ],
)
def test_a_5xx_or_unknown_error_inside_a_stream_is_transient(
    server: FakeProviderServer, error: dict[str, Any], status: int | None
) -> None:
    server.enqueue(openai_stream_error(error, ["Hel"]))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (status, True)
    assert error["message"] in str(info.value)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"code": 401, "message": "No auth credentials found"}, 401),
        ({"code": "context_length_exceeded", "message": "too long", "type": "invalid_request_error"}, 400),
        ({"code": None, "message": "slow down", "type": "rate_limit_exceeded"}, 429),
    ],
)
def test_an_error_code_or_type_inside_a_stream_gives_its_status(
    server: FakeProviderServer, error: dict[str, Any], status: int
) -> None:
    server.enqueue(openai_stream_error(error))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert info.value.status_code == status
    assert info.value.transient is (status == 429)


def test_a_transient_stream_error_is_retried_then_answers(server: FakeProviderServer) -> None:
    server.enqueue(openai_stream_error({"code": 503, "message": "No instances available"}), openai_stream(["ok"]))

    response = streamed_with_retries(model_for(server), ask("hi"))

    assert response.text == "ok"
    assert len(server.requests) == 2


# --- reasoning ----------------------------------------------------------------------------------------------


def completion_with(message: dict[str, Any], usage: dict[str, Any] | None = None, model: str = "gpt-test") -> Canned:
    return Canned(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def test_reasoning_effort_is_sent(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("ok"))

    request(model_for(server), ask("hi"), {"reasoning_effort": "high"})

    assert server.last_body["reasoning_effort"] == "high"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_text_of_compatible_servers_is_kept_as_thinking(server: FakeProviderServer, field: str) -> None:
    # Provenance: DeepSeek's reasoning model ("Reasoning Model" guide) returns the chain of thought as
    # message.reasoning_content beside content, as vLLM and LM Studio do; OpenRouter and Ollama name it reasoning.
    server.enqueue(
        completion_with({"role": "assistant", "content": "9.11 < 9.8", field: "Compare the decimals: 0.11 < 0.8."})
    )

    response = request(model_for(server, provider_name="deepseek"), ask("9.11 or 9.8?"))

    assert response.parts == [
        ThinkingPart(content="Compare the decimals: 0.11 < 0.8.", provider_name="deepseek"),
        TextPart(content="9.11 < 9.8"),
    ]


def test_streamed_reasoning_content_comes_before_the_answer(server: FakeProviderServer) -> None:
    # Provenance: DeepSeek's streamed reasoning: delta.reasoning_content chunks first, then delta.content chunks.
    canned = openai_stream(["9.11 ", "< 9.8"])
    assert canned.events is not None
    reasoning = [
        (
            None,
            {
                **canned.events[1][1],
                "choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}],
            },
        )
        for piece in ("Compare ", "the decimals.")
    ]
    canned.events[1:1] = reasoning
    server.enqueue(canned)

    events, response = stream(model_for(server), ask("9.11 or 9.8?"))

    assert [e.content for e in events if isinstance(e, ThinkingDelta)] == ["Compare ", "the decimals."]
    assert response.parts == [
        ThinkingPart(content="Compare the decimals.", provider_name="openai"),
        TextPart(content="9.11 < 9.8"),
    ]


def test_reasoning_is_sent_back_only_when_asked(server: FakeProviderServer) -> None:
    history: list[ModelMessage] = [
        *ask("Weather?"),
        ModelResponse(
            parts=[
                ThinkingPart(content="Call the tool.", provider_name="openai"),
                ThinkingPart(content="not ours", signature="x", provider_name="anthropic"),
                ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="call_1"),
            ]
        ),
        ModelRequest(parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="call_1")]),
    ]
    server.enqueue(openai_completion("Sunny."), openai_completion("Sunny."))

    request(model_for(server), history)
    assert "reasoning_content" not in server.last_body["messages"][1]

    request(model_for(server, send_reasoning=True), history)
    assert server.last_body["messages"][1]["reasoning_content"] == "Call the tool."


# --- files in prompts and tool results (the mapping lives in models/_multimodal.py) ----------------------------


def test_images_in_a_prompt_and_a_tool_result_reach_chat_completions(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("A cat and a chart."))
    png = BinaryContent(data=b"\x89PNG\r\n\x1a\n", media_type="image/png")
    history: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=["What is this?", ImageUrl(url="https://example.com/cat.jpg")])]),
        ModelResponse(parts=[ToolCallPart(tool_name="chart", args={}, tool_call_id="call_1")]),
        ModelRequest(parts=[ToolReturnPart(tool_name="chart", content=png, tool_call_id="call_1")]),
    ]

    request(model_for(server), history)

    messages = server.last_body["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[3]["content"][-1] == {"type": "image_url", "image_url": {"url": png.data_url()}}


# --- request controls ---------------------------------------------------------------------------------------

STRICT_TOOL = ToolDefinition(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "where": {"$ref": "#/$defs/Place"}},
        "required": ["city", "where"],
        "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
    },
)


def test_request_controls_reach_chat_completions(server: FakeProviderServer) -> None:
    # Provenance: the Chat Completions create parameters (API reference): tools[].function.strict,
    # response_format.json_schema.strict, parallel_tool_calls, user, service_tier, prompt_cache_key.
    server.enqueue(openai_completion("ok"))
    output = ToolDefinition(name="Answer", description="", parameters_json_schema={"type": "object"}, kind="output")
    settings = {
        "strict_tools": True,
        "strict_output": True,
        "parallel_tool_calls": False,
        "user": "user-42",
        "service_tier": "flex",
        "prompt_cache_key": "weather-v1",
        "top_k": 20,
        "extra_headers": {"X-Trace": "abc"},
        "extra_body": {"metadata": {"team": "support"}},
    }

    request(
        model_for(server),
        ask("hi"),
        settings,
        ModelRequestParameters(function_tools=[STRICT_TOOL], native_output=output),
    )

    body = server.last_body
    function = body["tools"][0]["function"]
    assert function["strict"] is True
    assert function["parameters"]["additionalProperties"] is False
    assert function["parameters"]["$defs"]["Place"]["additionalProperties"] is False
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object", "additionalProperties": False}
    assert (body["parallel_tool_calls"], body["user"], body["service_tier"]) == (False, "user-42", "flex")
    assert body["prompt_cache_key"] == "weather-v1"
    assert body["top_k"] == 20  # a compatible server (base_url): it takes top_k
    assert body["metadata"] == {"team": "support"}
    assert server.requests[-1].headers["x-trace"] == "abc"
    assert STRICT_TOOL.parameters_json_schema.get("additionalProperties") is None  # the definition is untouched


def test_top_k_is_not_sent_to_openais_own_api(server: FakeProviderServer) -> None:
    import openai

    server.enqueue(openai_completion("ok"))
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test")
    model = OpenAIModel("gpt-test", client=client)

    async def go() -> None:
        async with client:
            await model.request(ask("hi"), {"top_k": 20}, ModelRequestParameters())

    asyncio.run(go())
    assert "top_k" not in server.last_body


def test_without_strict_settings_schemas_go_as_they_are(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("ok"))

    request(model_for(server), ask("hi"), None, ModelRequestParameters(function_tools=[STRICT_TOOL]))

    function = server.last_body["tools"][0]["function"]
    assert "strict" not in function
    assert function["parameters"] == STRICT_TOOL.parameters_json_schema
