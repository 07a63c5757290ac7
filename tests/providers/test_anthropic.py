"""AnthropicModel with the real ``anthropic`` SDK against the fake Messages API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure._exceptions import ModelHTTPError, UserError
from perdure.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from perdure.models import (
    ModelRequestParameters,
    RetryConfig,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolDefinition,
    infer_model,
    request_with_retries,
)
from perdure.models.anthropic import AnthropicModel

from .fake_server import FakeProviderServer, anthropic_error, anthropic_message, anthropic_stream

WEATHER = ToolDefinition(
    name="get_weather",
    description="The weather in a city.",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
FINAL = ToolDefinition(
    name="final_result",
    description="The answer.",
    parameters_json_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
    kind="output",
)


def model_for(server: FakeProviderServer, name: str = "claude-test") -> AnthropicModel:
    return AnthropicModel(name, base_url=server.anthropic_base_url, api_key="sk-ant-test")


def ask(prompt: str, instructions: str | None = None) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)], instructions=instructions)]


def request(
    model: AnthropicModel, messages: list[ModelMessage], params: Any = None, settings: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: AnthropicModel, messages: list[ModelMessage], params: Any = None
) -> tuple[list[StreamEvent], ModelResponse]:
    async def go() -> tuple[list[StreamEvent], ModelResponse]:
        async with (
            model,
            model.request_stream(messages, None, params or ModelRequestParameters()) as streamed,
        ):
            events = [event async for event in streamed]
            return events, streamed.get()

    return asyncio.run(go())


def test_plain_text(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("Paris.", usage=(12, 3), model="claude-test-2025"))

    response = request(model_for(server), ask("Capital of France?", instructions="Answer briefly."))

    assert response.parts == [TextPart(content="Paris.")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.finish_reason == "end_turn"
    assert response.model_name == "claude-test-2025"
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    # SDK versions differ in the header they put the key in.
    assert "sk-ant-test" in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "").removeprefix("Bearer "),
    )
    assert sent.body["model"] == "claude-test"
    assert sent.body["max_tokens"] == 4096
    assert sent.body["system"] == "Answer briefly."
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}]
    assert "tools" not in sent.body


def test_request_mapping_with_tools_and_history(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("done"))
    history: list[ModelMessage] = [
        ModelRequest(
            parts=[
                SystemPromptPart(content="You are terse."),
                UserPromptPart(content="Weather in Paris and Rome?"),
            ],
            instructions="old instructions",
        ),
        ModelResponse(
            parts=[
                TextPart(content="Checking."),
                ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="toolu_1"),
                ToolCallPart(tool_name="get_weather", args='{"town": "Rome"}', tool_call_id="toolu_2"),
            ]
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(tool_name="get_weather", content={"temp_c": 21}, tool_call_id="toolu_1"),
                RetryPromptPart(content="city is required", tool_name="get_weather", tool_call_id="toolu_2"),
                RetryPromptPart(content="Answer with the final_result tool."),
            ],
            instructions="Use the tools.",
        ),
    ]
    params = ModelRequestParameters(function_tools=[WEATHER], output_tools=[FINAL], allow_text_output=False)

    request(model_for(server), history, params, settings={"max_tokens": 100, "temperature": 0.5})

    body = server.last_body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER.parameters_json_schema,
        },
        {"name": "final_result", "description": "The answer.", "input_schema": FINAL.parameters_json_schema},
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.5
    assert body["system"] == "You are terse.\n\nUse the tools."
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"town": "Rome"}},
    ]
    result, retry, nudge = messages[2]["content"]
    assert result == {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 21}'}
    assert retry["type"] == "tool_result"
    assert retry["tool_use_id"] == "toolu_2"
    assert retry["is_error"] is True
    assert retry["content"].startswith("city is required")
    assert nudge["type"] == "text"
    assert nudge["text"].startswith("Answer with the final_result tool.")


def test_parallel_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        anthropic_message(
            "Checking both.",
            tool_uses=[
                ("toolu_a", "get_weather", {"city": "Paris"}),
                ("toolu_b", "get_weather", {"city": "Rome"}),
            ],
        )
    )

    response = request(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    assert response.text == "Checking both."
    assert response.tool_calls == [
        ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="toolu_a"),
        ToolCallPart(tool_name="get_weather", args={"city": "Rome"}, tool_call_id="toolu_b"),
    ]
    assert response.finish_reason == "tool_use"
    assert "tool_choice" not in server.last_body  # text is allowed: the model chooses


def test_parallel_tool_calls_can_be_disabled(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("ok"))

    request(
        model_for(server),
        ask("hi"),
        ModelRequestParameters([WEATHER]),
        settings={"parallel_tool_calls": False},
    )

    assert server.last_body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_streaming_text(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_stream(["Hel", "lo", " world"], usage=(7, 3)))

    events, response = stream(model_for(server), ask("Say hello"))

    assert [e.content for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", " world"]
    assert response.parts == [TextPart(content="Hello world")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.finish_reason == "end_turn"
    assert response.model_name == "claude-test"
    assert server.last_body["stream"] is True


def test_streaming_tool_call_arguments_are_reassembled(server: FakeProviderServer) -> None:
    server.enqueue(
        anthropic_stream(
            ["Let me check."],
            tool_uses=[
                ("toolu_a", "get_weather", ['{"ci', 'ty": "Par', 'is"}']),
                ("toolu_b", "get_weather", ['{"city"', ': "Rome"}']),
            ],
            usage=(20, 9),
        )
    )

    events, response = stream(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    assert {e.index for e in events if isinstance(e, ToolCallDelta)} == {1, 2}
    assert response.text == "Let me check."
    assert [(c.tool_name, c.tool_call_id, c.args_as_dict()) for c in response.tool_calls] == [
        ("get_weather", "toolu_a", {"city": "Paris"}),
        ("get_weather", "toolu_b", {"city": "Rome"}),
    ]
    assert response.finish_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 9)


def test_error_event_in_a_stream_is_transient_when_overloaded(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_stream(["Hel"], error={"type": "overloaded_error", "message": "Overloaded"}))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert info.value.transient is True
    assert info.value.status_code == 529
    assert "Overloaded" in str(info.value)


def test_structured_output_uses_output_config(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message('{"answer": "42"}'))
    output = ToolDefinition(name="Answer", description="", parameters_json_schema={"type": "object"}, kind="output")

    response = request(model_for(server), ask("Meaning of life?"), ModelRequestParameters(native_output=output))

    assert server.last_body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert response.text == '{"answer": "42"}'


def test_rate_limit_is_transient_with_retry_after(server: FakeProviderServer) -> None:
    server.enqueue(
        anthropic_error(429, "Number of request tokens has exceeded your rate limit", headers={"retry-after": "12"})
    )

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient, info.value.retry_after) == (429, True, 12.0)
    assert "exceeded your rate limit" in str(info.value)
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_bad_request_is_terminal_with_provider_message(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_error(400, "messages: roles must alternate"))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (400, False)
    assert "messages: roles must alternate" in str(info.value)


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_are_transient(server: FakeProviderServer, status: int) -> None:
    server.enqueue(anthropic_error(status, "Internal error" if status == 500 else "Overloaded"))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (status, True)


def test_request_with_retries_retries_an_overload(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_error(529, "Overloaded"), anthropic_message("ok"))
    model = model_for(server)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> ModelResponse:
        async with model:
            return await request_with_retries(
                lambda: model.request(ask("hi"), None, ModelRequestParameters()),
                RetryConfig(),
                sleep=fake_sleep,
            )

    assert asyncio.run(go()).text == "ok"
    assert len(server.requests) == 2
    assert len(slept) == 1


def test_request_with_retries_does_not_retry_a_bad_request(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_error(400, "bad request"))
    model = model_for(server)

    async def fake_sleep(seconds: float) -> None:
        raise AssertionError("a 400 must not be retried")

    async def go() -> ModelResponse:
        async with model:
            return await request_with_retries(
                lambda: model.request(ask("hi"), None, ModelRequestParameters()),
                RetryConfig(),
                sleep=fake_sleep,
            )

    with pytest.raises(ModelHTTPError, match="bad request"):
        asyncio.run(go())
    assert len(server.requests) == 1


def test_one_model_serves_several_event_loops(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message("one"), anthropic_message("two"))
    model = model_for(server)

    async def go() -> str | None:
        return (await model.request(ask("hi"), None, ModelRequestParameters())).text

    assert asyncio.run(go()) == "one"
    assert asyncio.run(go()) == "two"


def test_infer_model_needs_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    with pytest.raises(UserError, match="ANTHROPIC_API_KEY"):
        infer_model("anthropic:claude-sonnet-4-5")


def test_infer_model_builds_an_anthropic_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)

    model = infer_model("anthropic:claude-sonnet-4-5")

    assert isinstance(model, AnthropicModel)
    assert (model.model_name, model.system) == ("claude-sonnet-4-5", "anthropic")
    assert model.base_url == "https://api.anthropic.com"


def test_model_without_any_key_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)

    with pytest.raises(UserError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-5")
