"""OpenAIResponsesModel with the real ``openai`` SDK against the fake server speaking the Responses API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from perdure._exceptions import ModelHTTPError
from perdure.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from perdure.models import (
    ModelRequestParameters,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolDefinition,
    infer_model,
)
from perdure.models.openai_responses import OpenAIResponsesModel

from .fake_server import FakeProviderServer, openai_error
from .responses_server import (
    function_call,
    message,
    openai_response,
    reasoning,
    response_body,
    responses_stream,
    usage,
)

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


def model_for(server: FakeProviderServer, name: str = "gpt-test", **options: Any) -> OpenAIResponsesModel:
    return OpenAIResponsesModel(name, base_url=server.openai_base_url, api_key="sk-test", **options)


def ask(prompt: str, instructions: str | None = None) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)], instructions=instructions)]


def request(
    model: OpenAIResponsesModel, messages: list[ModelMessage], params: Any = None, settings: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: OpenAIResponsesModel, messages: list[ModelMessage], params: Any = None
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
    server.enqueue(openai_response([message("Paris.")], usage_=usage(12, 3), model="gpt-test-2025"))

    response = request(model_for(server), ask("Capital of France?", instructions="Answer briefly."))

    assert response.parts == [TextPart(content="Paris.")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.finish_reason == "completed"
    assert response.model_name == "gpt-test-2025"
    sent = server.requests[0]
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body == {
        "model": "gpt-test",
        "instructions": "Answer briefly.",
        "input": [{"role": "user", "content": "Capital of France?"}],
    }


def test_request_mapping_with_tools_and_history(server: FakeProviderServer) -> None:
    server.enqueue(openai_response([message("done")]))
    history: list[ModelMessage] = [
        ModelRequest(
            parts=[SystemPromptPart(content="You are terse."), UserPromptPart(content="Weather in Paris and Rome?")],
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
    settings = {"max_tokens": 100, "temperature": 0.0, "parallel_tool_calls": False, "user": "u-1"}

    request(model_for(server), history, params, settings)

    body = server.last_body
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER.parameters_json_schema,
            "strict": False,
            "description": "The weather in a city.",
        },
        {
            "type": "function",
            "name": "final_result",
            "parameters": FINAL.parameters_json_schema,
            "strict": False,
            "description": "The answer.",
        },
    ]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert (body["max_output_tokens"], body["temperature"], body["user"]) == (100, 0.0, "u-1")
    assert body["instructions"] == "Use the tools."
    items = body["input"]
    assert items[0] == {"role": "system", "content": "You are terse."}
    assert items[1] == {"role": "user", "content": "Weather in Paris and Rome?"}
    assert items[2] == {"role": "assistant", "content": "Checking."}
    assert items[3] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert items[4]["arguments"] == '{"town": "Rome"}'
    assert items[5] == {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 21}'}
    assert items[6]["type"] == "function_call_output"
    assert items[6]["output"].startswith("city is required")
    assert items[7]["role"] == "user"
    assert items[7]["content"].startswith("Answer with the final_result tool.")


def test_parallel_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        openai_response(
            [
                function_call("call_a", "get_weather", '{"city": "Paris"}'),
                function_call("call_b", "get_weather", '{"city": "Rome"}'),
            ]
        )
    )

    response = request(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    assert response.tool_calls == [
        ToolCallPart(tool_name="get_weather", args='{"city": "Paris"}', tool_call_id="call_a"),
        ToolCallPart(tool_name="get_weather", args='{"city": "Rome"}', tool_call_id="call_b"),
    ]
    assert "tool_choice" not in server.last_body


def test_structured_output_uses_text_format(server: FakeProviderServer) -> None:
    server.enqueue(openai_response([message('{"answer": "42"}')]))
    output = ToolDefinition(
        name="Answer",
        description="The final answer.",
        parameters_json_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
        kind="output",
    )

    response = request(
        model_for(server),
        ask("Meaning of life?"),
        ModelRequestParameters(native_output=output),
        {"strict_output": True},
    )

    assert server.last_body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "Answer",
            "schema": {**output.parameters_json_schema, "additionalProperties": False},
            "description": "The final answer.",
            "strict": True,
        }
    }
    assert json.loads(response.text or "") == {"answer": "42"}


def test_reasoning_items_are_kept_and_sent_back(server: FakeProviderServer) -> None:
    server.enqueue(
        openai_response(
            [
                reasoning("rs_1", ["Need the weather.", "Call the tool."], encrypted="gAAAA-encrypted-1"),
                function_call("call_a", "get_weather", '{"city": "Paris"}', id="fc_a"),
            ],
            usage_=usage(20, 40, cached=8, reasoning_tokens=32),
        ),
        openai_response([reasoning("rs_2", encrypted="gAAAA-encrypted-2"), message("Sunny.", id="msg_2")]),
    )
    model = model_for(server, reasoning_summary="auto", store=False)
    params = ModelRequestParameters([WEATHER])

    first = request(model, ask("Weather in Paris?"), params, {"reasoning_effort": "low"})

    thinking = first.parts[0]
    assert isinstance(thinking, ThinkingPart)
    assert thinking.content == "Need the weather.\n\nCall the tool."
    assert (thinking.id, thinking.signature, thinking.provider_name) == ("rs_1", "gAAAA-encrypted-1", "openai")
    assert first.tool_calls[0].tool_call_id == "call_a"
    usage_ = first.usage
    assert (usage_.input_tokens, usage_.cache_read_tokens, usage_.output_tokens, usage_.reasoning_tokens) == (
        12,
        8,
        40,
        32,
    )
    sent = server.last_body
    assert sent["reasoning"] == {"effort": "low", "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"]
    assert sent["store"] is False

    # Through JSON (a journal, a crash) and back: the reasoning item goes back with the item that followed it.
    history = ModelMessagesTypeAdapter.validate_json(
        ModelMessagesTypeAdapter.dump_json([*ask("Weather in Paris?"), first])
    )
    history.append(
        ModelRequest(parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="call_a")])
    )
    second = request(model, history, params)

    items = server.last_body["input"]
    assert items[1] == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [
            {"type": "summary_text", "text": "Need the weather."},
            {"type": "summary_text", "text": "Call the tool."},
        ],
        "encrypted_content": "gAAAA-encrypted-1",
    }
    assert items[2] == {
        "type": "function_call",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "id": "fc_a",
    }
    assert items[3] == {"type": "function_call_output", "call_id": "call_a", "output": "sunny"}
    assert second.parts[1] == TextPart(content="Sunny.")

    # The answer's own reasoning pairs with its message item the same way.
    server.enqueue(openai_response([message("ok")]))
    request(model, [*history, second, *ask("Thanks")], params)
    items = server.last_body["input"]
    assert items[4]["id"] == "rs_2"
    assert items[5] == {
        "type": "message",
        "role": "assistant",
        "id": "msg_2",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
    }


def test_other_providers_thinking_is_not_sent(server: FakeProviderServer) -> None:
    server.enqueue(openai_response([message("ok")]))
    history: list[ModelMessage] = [
        *ask("hi"),
        ModelResponse(
            parts=[
                ThinkingPart(content="hmm", signature="sig", provider_name="anthropic"),
                ThinkingPart(content="from chat completions", provider_name="openai"),  # no item id to refer to
                TextPart(content="hello"),
            ]
        ),
        *ask("again"),
    ]

    request(model_for(server), history)

    assert server.last_body["input"][1] == {"role": "assistant", "content": "hello"}


def test_streaming_text(server: FakeProviderServer) -> None:
    server.enqueue(responses_stream([message("Hello world")], pieces=3, usage_=usage(7, 3)))

    events, response = stream(model_for(server), ask("Say hello"))

    assert "".join(e.content for e in events if isinstance(e, TextDelta)) == "Hello world"
    assert len([e for e in events if isinstance(e, TextDelta)]) == 3
    assert response.parts == [TextPart(content="Hello world")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.finish_reason == "completed"
    assert server.last_body["stream"] is True


def test_streaming_reasoning_and_parallel_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        responses_stream(
            [
                reasoning("rs_1", ["First.", "Second."], encrypted="enc-1"),
                function_call("call_a", "get_weather", '{"city": "Paris"}', id="fc_a"),
                function_call("call_b", "get_weather", '{"city": "Rome"}', id="fc_b"),
            ]
        )
    )

    events, response = stream(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    assert any(isinstance(e, ThinkingDelta) for e in events)
    assert len([e for e in events if isinstance(e, ToolCallDelta)]) >= 4
    thinking = response.parts[0]
    assert isinstance(thinking, ThinkingPart)
    assert (thinking.content, thinking.id, thinking.signature) == ("First.\n\nSecond.", "rs_1", "enc-1")
    assert thinking.provider_data == {
        "summary": [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Second."}],
        "next_id": "fc_a",
    }
    assert [(c.tool_call_id, c.args_as_dict()) for c in response.tool_calls] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"city": "Rome"}),
    ]


def test_streamed_and_whole_responses_agree(server: FakeProviderServer) -> None:
    output = [
        reasoning("rs_1", ["Think."], encrypted="enc"),
        message("Answer.", id="msg_1"),
    ]
    server.enqueue(openai_response(output), responses_stream(output))
    model = model_for(server)

    whole = request(model, ask("q"))
    _, streamed = stream(model, ask("q"))

    assert whole.parts == streamed.parts


def test_rate_limit_is_transient_with_retry_after(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(429, "Rate limit reached for gpt-test", headers={"Retry-After": "3"}))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient, info.value.retry_after) == (429, True, 3.0)
    assert "Rate limit reached" in str(info.value)
    assert len(server.requests) == 1


def test_bad_request_is_terminal(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(400, "Invalid schema for function 'get_weather'"))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (400, False)
    assert "Invalid schema" in str(info.value)


def test_failed_response_is_classified_by_its_code(server: FakeProviderServer) -> None:
    server.enqueue(
        openai_response([], status="failed", error={"code": "server_error", "message": "The server had an error"}),
        openai_response([], status="failed", error={"code": "invalid_prompt", "message": "Prompt flagged"}),
    )
    model = model_for(server)

    with pytest.raises(ModelHTTPError) as transient:
        request(model, ask("hi"))
    with pytest.raises(ModelHTTPError) as terminal:
        request(model, ask("hi"))

    assert transient.value.transient is True
    assert "The server had an error" in str(transient.value)
    assert terminal.value.transient is False
    assert "invalid_prompt" in str(terminal.value)


def test_stream_failure_and_error_event(server: FakeProviderServer) -> None:
    server.enqueue(
        responses_stream([message("Hel")], fail={"code": "server_error", "message": "broke off"}),
        responses_stream(
            [message("Hel")], error_event={"code": "invalid_request_error", "message": "bad", "param": None}
        ),
    )
    model = model_for(server)

    with pytest.raises(ModelHTTPError) as failed:
        stream(model, ask("hi"))
    with pytest.raises(ModelHTTPError) as errored:
        stream(model, ask("hi"))

    assert (failed.value.transient, "broke off" in str(failed.value)) == (True, True)
    assert (errored.value.transient, "bad" in str(errored.value)) == (False, True)


def test_incomplete_response_keeps_its_reason(server: FakeProviderServer) -> None:
    server.enqueue(openai_response([message("Partial")], status="incomplete", incomplete_reason="max_output_tokens"))

    response = request(model_for(server), ask("Write a novel"))

    assert (response.text, response.finish_reason) == ("Partial", "max_output_tokens")


def test_infer_model_builds_a_responses_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    model = infer_model("openai-responses:gpt-4.1")

    assert isinstance(model, OpenAIResponsesModel)
    assert (model.model_name, model.system, model.base_url) == ("gpt-4.1", "openai", "https://api.openai.com/v1")


def test_fixture_body_is_a_valid_sdk_response() -> None:
    import openai.types.responses as types

    parsed = types.Response.model_validate(
        response_body([reasoning("rs_1", ["x"]), message("y"), function_call("c", "f", "{}")])
    )
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call"]


def test_request_controls(server: FakeProviderServer) -> None:
    server.enqueue(openai_response([message("ok")]))
    settings = {
        "extra_headers": {"x-trace": "t-1"},
        "extra_body": {"metadata": {"team": "agents"}},
        "service_tier": "flex",
        "prompt_cache_key": "agent-1",
        "strict_tools": True,
    }

    request(model_for(server), ask("hi"), ModelRequestParameters([WEATHER]), settings)

    sent = server.requests[0]
    assert sent.headers["x-trace"] == "t-1"
    assert sent.body["metadata"] == {"team": "agents"}
    assert (sent.body["service_tier"], sent.body["prompt_cache_key"]) == ("flex", "agent-1")
    assert sent.body["tools"][0]["strict"] is True
    assert sent.body["tools"][0]["parameters"]["additionalProperties"] is False  # what strict mode demands
