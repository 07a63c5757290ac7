"""OpenAIModel with the real ``openai`` SDK against the fake Chat Completions server."""

from __future__ import annotations

import asyncio
import json
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
from perdure.models.openai import OpenAIModel

from .fake_server import FakeProviderServer, openai_completion, openai_error, openai_stream

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


def model_for(server: FakeProviderServer, name: str = "gpt-test") -> OpenAIModel:
    return OpenAIModel(name, base_url=server.openai_base_url, api_key="sk-test")


def ask(prompt: str, instructions: str | None = None) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)], instructions=instructions)]


def request(
    model: OpenAIModel, messages: list[ModelMessage], params: Any = None, settings: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: OpenAIModel, messages: list[ModelMessage], params: Any = None
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
    server.enqueue(openai_completion("Paris.", usage=(12, 3), model="gpt-test-2025"))

    response = request(model_for(server), ask("Capital of France?", instructions="Answer briefly."))

    assert response.parts == [TextPart(content="Paris.")]
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 3
    assert response.finish_reason == "stop"
    assert response.model_name == "gpt-test-2025"
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["model"] == "gpt-test"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert "tools" not in sent.body
    assert "stream" not in sent.body


def test_request_mapping_with_tools_and_history(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion("done"))
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
                ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="call_1"),
                ToolCallPart(tool_name="get_weather", args='{"town": "Rome"}', tool_call_id="call_2"),
            ]
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(tool_name="get_weather", content={"temp_c": 21}, tool_call_id="call_1"),
                RetryPromptPart(content="city is required", tool_name="get_weather", tool_call_id="call_2"),
                RetryPromptPart(content="Answer with the final_result tool."),
            ],
            instructions="Use the tools.",
        ),
    ]
    params = ModelRequestParameters(function_tools=[WEATHER], output_tools=[FINAL], allow_text_output=False)

    request(model_for(server), history, params, settings={"max_tokens": 100, "temperature": 0.0})

    body = server.last_body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters_json_schema,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "final_result",
                "description": "The answer.",
                "parameters": FINAL.parameters_json_schema,
            },
        },
    ]
    assert body["tool_choice"] == "required"
    assert body["max_tokens"] == 100  # a base_url server gets max_tokens, OpenAI itself max_completion_tokens
    assert body["temperature"] == 0.0
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "tool", "tool", "user"]
    assert messages[0] == {"role": "system", "content": "Use the tools."}  # the last request's instructions
    assert messages[1] == {"role": "system", "content": "You are terse."}
    assert messages[3]["content"] == "Checking."
    assert messages[3]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"town": "Rome"}'},
        },
    ]
    assert messages[4] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}
    assert messages[5]["tool_call_id"] == "call_2"
    assert messages[5]["content"].startswith("city is required")
    assert messages[6]["content"].startswith("Answer with the final_result tool.")


def test_parallel_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        openai_completion(
            tool_calls=[
                ("call_a", "get_weather", '{"city": "Paris"}'),
                ("call_b", "get_weather", '{"city": "Rome"}'),
            ]
        )
    )
    params = ModelRequestParameters(function_tools=[WEATHER])

    response = request(model_for(server), ask("Paris and Rome?"), params)

    assert response.tool_calls == [
        ToolCallPart(tool_name="get_weather", args='{"city": "Paris"}', tool_call_id="call_a"),
        ToolCallPart(tool_name="get_weather", args='{"city": "Rome"}', tool_call_id="call_b"),
    ]
    assert [call.args_as_dict() for call in response.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert response.finish_reason == "tool_calls"
    assert "tool_choice" not in server.last_body  # text is allowed: the model chooses


def test_streaming_text(server: FakeProviderServer) -> None:
    server.enqueue(openai_stream(["Hel", "lo", " world"], usage=(7, 3)))

    events, response = stream(model_for(server), ask("Say hello"))

    assert [e.content for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", " world"]
    assert response.parts == [TextPart(content="Hello world")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.finish_reason == "stop"
    assert server.last_body["stream"] is True
    assert server.last_body["stream_options"] == {"include_usage": True}


def test_streaming_tool_call_arguments_are_reassembled(server: FakeProviderServer) -> None:
    server.enqueue(
        openai_stream(
            ["Let me check."],
            tool_calls=[
                ("call_a", "get_weather", ['{"ci', 'ty": "Par', 'is"}']),
                ("call_b", "get_weather", ['{"city"', ': "Rome"}']),
            ],
        )
    )

    events, response = stream(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert {d.index for d in deltas} == {1, 2}
    assert response.text == "Let me check."
    assert [(c.tool_name, c.tool_call_id, c.args_as_dict()) for c in response.tool_calls] == [
        ("get_weather", "call_a", {"city": "Paris"}),
        ("get_weather", "call_b", {"city": "Rome"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage.input_tokens == 10


def test_structured_output_uses_response_format(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion('{"answer": "42"}'))
    output = ToolDefinition(
        name="Answer",
        description="The final answer.",
        parameters_json_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
        kind="output",
    )

    response = request(model_for(server), ask("Meaning of life?"), ModelRequestParameters(native_output=output))

    assert server.last_body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Answer",
            "description": "The final answer.",
            "schema": output.parameters_json_schema,
        },
    }
    assert response.parts == [TextPart(content='{"answer": "42"}')]
    assert json.loads(response.text or "") == {"answer": "42"}


def test_rate_limit_is_transient_with_retry_after(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(429, "Rate limit reached for gpt-test", headers={"Retry-After": "7"}))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert info.value.status_code == 429
    assert info.value.transient is True
    assert info.value.retry_after == 7.0
    assert "Rate limit reached for gpt-test" in str(info.value)
    assert info.value.model_name == "gpt-test"
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_bad_request_is_terminal_with_provider_message(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(400, "Invalid schema for function 'get_weather'"))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert info.value.status_code == 400
    assert info.value.transient is False
    assert info.value.retry_after is None
    assert "Invalid schema for function 'get_weather'" in str(info.value)
    assert "400" in str(info.value)


def test_server_error_is_transient(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(500, "The server had an error"))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (500, True)


def test_stream_that_fails_before_starting_raises_model_http_error(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(503, "overloaded", headers={"retry-after-ms": "1500"}))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient, info.value.retry_after) == (503, True, 1.5)


def test_unreachable_server_is_transient() -> None:
    model = OpenAIModel("gpt-test", base_url="http://127.0.0.1:9/v1", api_key="sk-test")

    with pytest.raises(ModelHTTPError) as info:
        request(model, ask("hi"))

    assert info.value.transient is True
    assert info.value.status_code is None
    assert "127.0.0.1:9" in str(info.value)


def test_request_with_retries_retries_a_rate_limit(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(429, "slow down", headers={"Retry-After": "2"}), openai_completion("ok"))
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

    response = asyncio.run(go())

    assert response.text == "ok"
    assert len(server.requests) == 2
    assert len(slept) == 1
    assert slept[0] >= 2.0  # Retry-After is honoured


def test_request_with_retries_does_not_retry_a_bad_request(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(400, "bad request"))
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
    server.enqueue(openai_completion("one"), openai_completion("two"))
    model = model_for(server)

    async def go() -> str | None:
        return (await model.request(ask("hi"), None, ModelRequestParameters())).text

    # Each asyncio.run gets its own SDK client, closed when its loop shuts down: no leaked sockets.
    assert asyncio.run(go()) == "one"
    assert asyncio.run(go()) == "two"


def test_local_server_needs_no_api_key(server: FakeProviderServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.enqueue(openai_completion("hi from llama"))
    model = OpenAIModel("llama3.2", base_url=server.openai_base_url)

    assert request(model, ask("hi")).text == "hi from llama"
    assert server.last_body["model"] == "llama3.2"
    assert server.last_body.get("max_completion_tokens") is None


def test_passed_client_is_used_and_left_open(server: FakeProviderServer) -> None:
    import openai

    server.enqueue(openai_completion("via my client"))

    async def go() -> str | None:
        async with openai.AsyncOpenAI(api_key="sk-mine", base_url=server.openai_base_url) as client:
            model = OpenAIModel("gpt-test", client=client, provider_name="my-gateway")
            assert model.system == "my-gateway"
            response = await model.request(ask("hi"), None, ModelRequestParameters())
            await model.close()
            assert not client.is_closed()
            return response.text

    assert asyncio.run(go()) == "via my client"
    assert server.last_body["model"] == "gpt-test"


def test_infer_model_needs_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        infer_model("openai:gpt-4.1-mini")


def test_infer_model_builds_an_openai_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    model = infer_model("openai:gpt-4.1-mini")

    assert isinstance(model, OpenAIModel)
    assert (model.model_name, model.system) == ("gpt-4.1-mini", "openai")
    assert model.base_url == "https://api.openai.com/v1"


def test_model_without_any_key_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4.1-mini")


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as info:
        infer_model("mistral:large")

    assert "'mistral'" in str(info.value)
    for known in ("openai", "anthropic", "test"):
        assert known in str(info.value)


def test_unscripted_request_fails_loudly(server: FakeProviderServer) -> None:
    # The fake server's own safety net: nothing queued means a 500, never a hang.
    with pytest.raises(ModelHTTPError, match="no scripted answer"):
        request(model_for(server), ask("hi"))


def test_leaving_a_stream_early_closes_it(server: FakeProviderServer) -> None:
    server.enqueue(openai_stream(["one", "two", "three"]), openai_completion("still fine"))
    model = model_for(server)

    async def go() -> tuple[list[StreamEvent], str | None]:
        async with model:
            first: list[StreamEvent] = []
            async with model.request_stream(ask("count"), None, ModelRequestParameters()) as streamed:
                async for event in streamed:
                    first.append(event)
                    break
            # The connection is usable again: the next request on the same client goes through.
            response = await model.request(ask("again"), None, ModelRequestParameters())
            return first, response.text

    first, text = asyncio.run(go())
    assert [e.content for e in first if isinstance(e, TextDelta)] == ["one"]
    assert text == "still fine"


def test_error_in_the_middle_of_a_stream_is_transient(server: FakeProviderServer) -> None:
    broken = openai_stream(["Hel"], usage=None)
    assert broken.events is not None
    broken.events[-2:] = [(None, {"error": {"message": "The server had an error while processing"}})]
    server.enqueue(broken)

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert info.value.transient is True
    assert "The server had an error while processing" in str(info.value)
