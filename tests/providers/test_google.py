"""GoogleModel with the real ``google-genai`` SDK against the fake server speaking the Gemini REST format."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from perdure._exceptions import ModelHTTPError, UnexpectedModelBehavior, UserError
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
    RetryConfig,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolDefinition,
    infer_model,
    request_with_retries,
)
from perdure.models.google import GoogleModel

from .fake_server import Canned, FakeProviderServer
from .google_server import call, gemini_error, gemini_response, gemini_stream, text, usage_metadata, wire

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


def model_for(server: FakeProviderServer, name: str = "gemini-test", **options: Any) -> GoogleModel:
    return GoogleModel(name, base_url=server.url, api_key="gk-test", **options)


def ask(prompt: str, instructions: str | None = None) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)], instructions=instructions)]


def request(
    model: GoogleModel, messages: list[ModelMessage], params: Any = None, settings: Any = None
) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            return await model.request(messages, settings, params or ModelRequestParameters())

    return asyncio.run(go())


def stream(
    model: GoogleModel, messages: list[ModelMessage], params: Any = None
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
    server.enqueue(gemini_response([text("Paris.")], usage=usage_metadata(12, 3), model="gemini-test-002"))

    response = request(model_for(server), ask("Capital of France?", instructions="Answer briefly."))

    assert response.parts == [TextPart(content="Paris.")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.finish_reason == "STOP"
    assert response.model_name == "gemini-test-002"
    sent = server.requests[0]
    assert sent.path.endswith("/models/gemini-test:generateContent")  # the SDK picks the API version
    assert sent.headers["x-goog-api-key"] == "gk-test"
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Answer briefly."}]
    assert "tools" not in sent.body


def test_request_mapping_with_tools_and_history(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text("done")]))
    history: list[ModelMessage] = [
        ModelRequest(
            parts=[SystemPromptPart(content="You are terse."), UserPromptPart(content="Weather in Paris and Rome?")],
            instructions="old instructions",
        ),
        ModelResponse(
            parts=[
                TextPart(content="Checking."),
                ToolCallPart(tool_name="get_weather", args={"city": "Paris"}, tool_call_id="call_1"),
                ToolCallPart(tool_name="get_weather", args='{"town": "Rome"}', tool_call_id="pdcall_made_up"),
            ]
        ),
        ModelRequest(
            parts=[
                ToolReturnPart(tool_name="get_weather", content={"temp_c": 21}, tool_call_id="call_1"),
                RetryPromptPart(content="city is required", tool_name="get_weather", tool_call_id="pdcall_made_up"),
                RetryPromptPart(content="Answer with the final_result tool."),
            ],
            instructions="Use the tools.",
        ),
    ]
    params = ModelRequestParameters(function_tools=[WEATHER], output_tools=[FINAL], allow_text_output=False)

    request(model_for(server), history, params, settings={"max_tokens": 100, "temperature": 0.0, "top_k": 5})

    body = server.last_body
    assert wire(body["tools"]) == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER.parameters_json_schema,
                },
                {
                    "name": "final_result",
                    "description": "The answer.",
                    "parametersJsonSchema": FINAL.parameters_json_schema,
                },
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    config = body["generationConfig"]
    assert (config["maxOutputTokens"], config["temperature"], config["topK"]) == (100, 0.0, 5)
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse.\n\nUse the tools."}]
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        {"text": "Checking."},
        {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}}},
        # An id perdure made up (the API sent none) is not sent back.
        {"functionCall": {"name": "get_weather", "args": {"town": "Rome"}}},
    ]
    results = contents[2]["parts"]
    assert results[0] == {
        "functionResponse": {"id": "call_1", "name": "get_weather", "response": {"result": {"temp_c": 21}}}
    }
    assert results[1]["functionResponse"]["name"] == "get_weather"
    assert "id" not in results[1]["functionResponse"]
    assert results[1]["functionResponse"]["response"]["error"].startswith("city is required")
    assert results[2]["text"].startswith("Answer with the final_result tool.")


def test_parallel_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        gemini_response(
            [call("get_weather", {"city": "Paris"}, id="fc-1"), call("get_weather", {"city": "Rome"})],
        )
    )

    response = request(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    calls = response.tool_calls
    assert [(c.tool_name, c.args_as_dict()) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert calls[0].tool_call_id == "fc-1"
    assert calls[1].tool_call_id.startswith("pdcall_")  # Gemini 2.x sends no ids: perdure makes one up
    assert "toolConfig" not in server.last_body  # text is allowed: the model chooses


def test_structured_output_uses_response_json_schema(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text('{"answer": "42"}')]))
    output = ToolDefinition(
        name="Answer",
        description="The final answer.",
        parameters_json_schema={"type": "object", "properties": {"answer": {"type": "string"}}},
        kind="output",
    )

    response = request(model_for(server), ask("Meaning of life?"), ModelRequestParameters(native_output=output))

    config = server.last_body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == output.parameters_json_schema
    assert json.loads(response.text or "") == {"answer": "42"}


def test_streaming_text(server: FakeProviderServer) -> None:
    server.enqueue(gemini_stream([[text("Hel")], [text("lo")], [text(" world")]], usage=usage_metadata(7, 3)))

    events, response = stream(model_for(server), ask("Say hello"))

    assert [e.content for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", " world"]
    assert response.parts == [TextPart(content="Hello world")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 3)
    assert response.finish_reason == "STOP"
    sent = server.requests[0]
    assert sent.path.endswith("/models/gemini-test:streamGenerateContent?alt=sse")


def test_streaming_tool_calls(server: FakeProviderServer) -> None:
    server.enqueue(
        gemini_stream(
            [
                [text("Let me check.")],
                [call("get_weather", {"city": "Paris"}, id="fc-a"), call("get_weather", {"city": "Rome"}, id="fc-b")],
            ]
        )
    )

    events, response = stream(model_for(server), ask("Paris and Rome?"), ModelRequestParameters([WEATHER]))

    assert len([e for e in events if isinstance(e, ToolCallDelta)]) == 2
    assert response.text == "Let me check."
    assert [(c.tool_name, c.tool_call_id, c.args_as_dict()) for c in response.tool_calls] == [
        ("get_weather", "fc-a", {"city": "Paris"}),
        ("get_weather", "fc-b", {"city": "Rome"}),
    ]


def test_thinking_parts_and_signatures_are_kept_and_sent_back(server: FakeProviderServer) -> None:
    server.enqueue(
        gemini_response(
            [
                text("The user wants Paris weather.", thought=True),
                call("get_weather", {"city": "Paris"}, signature=b"sig-on-the-call"),
            ],
            usage=usage_metadata(20, 8, thoughts=30),
        ),
        gemini_response([text("It is sunny.", signature=b"sig-on-text")]),
    )
    model = model_for(server, thinking_budget=1024, include_thoughts=True)
    params = ModelRequestParameters([WEATHER])

    first = request(model, ask("Weather in Paris?"), params)

    signature = base64.b64encode(b"sig-on-the-call").decode()
    assert first.parts[0] == ThinkingPart(content="The user wants Paris weather.", provider_name="google")
    assert first.parts[1] == ThinkingPart(content="", signature=signature, provider_name="google")
    assert isinstance(first.parts[2], ToolCallPart)
    assert (first.usage.output_tokens, first.usage.reasoning_tokens) == (38, 30)  # thinking is output too
    assert wire(server.last_body)["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 1024,
        "includeThoughts": True,
    }

    # The history survives a trip through JSON (a journal, a crash) and goes back with its signature in place.
    history = ModelMessagesTypeAdapter.validate_json(
        ModelMessagesTypeAdapter.dump_json([*ask("Weather in Paris?"), first])
    )
    call_id = first.tool_calls[0].tool_call_id
    history.append(ModelRequest(parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id=call_id)]))
    second = request(model, history, params)

    assert second.parts == [
        ThinkingPart(content="", signature=base64.b64encode(b"sig-on-text").decode(), provider_name="google"),
        TextPart(content="It is sunny."),
    ]
    model_turn = wire(server.last_body)["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [
            {"text": "The user wants Paris weather.", "thought": True},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": signature},
        ],
    }


def test_other_providers_thinking_is_not_sent(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text("ok")]))
    history: list[ModelMessage] = [
        *ask("hi"),
        ModelResponse(
            parts=[
                ThinkingPart(content="hmm", signature="anthropic-sig", provider_name="anthropic"),
                TextPart(content="hello"),
            ]
        ),
        *ask("again"),
    ]

    request(model_for(server), history)

    assert server.last_body["contents"][1] == {"role": "model", "parts": [{"text": "hello"}]}


def test_rate_limit_is_transient_with_retry_delay(server: FakeProviderServer) -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
    server.enqueue(gemini_error(429, "Resource has been exhausted (e.g. check quota).", details=[retry_info]))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient, info.value.retry_after) == (429, True, 17.0)
    assert "Resource has been exhausted" in str(info.value)
    assert info.value.model_name == "gemini-test"
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_bad_request_is_terminal(server: FakeProviderServer) -> None:
    server.enqueue(gemini_error(400, 'Invalid JSON payload received. Unknown name "foo"'))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (400, False)
    assert "Invalid JSON payload" in str(info.value)


def test_server_error_is_transient(server: FakeProviderServer) -> None:
    server.enqueue(gemini_error(503, "The model is overloaded. Please try again later."))

    with pytest.raises(ModelHTTPError) as info:
        request(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (503, True)


def test_stream_that_fails_before_starting(server: FakeProviderServer) -> None:
    server.enqueue(gemini_error(500, "Internal error encountered."))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (500, True)


@pytest.mark.parametrize(("code", "transient"), [(400, False), (500, True)])
def test_error_in_the_middle_of_a_stream_is_classified_by_its_code(
    server: FakeProviderServer, code: int, transient: bool
) -> None:
    server.enqueue(gemini_stream([[text("Hel")]], error={"code": code, "message": "broke off", "status": "X"}))

    with pytest.raises(ModelHTTPError) as info:
        stream(model_for(server), ask("hi"))

    assert (info.value.status_code, info.value.transient) == (code, transient)
    assert "broke off" in str(info.value)


def test_unreachable_server_is_transient() -> None:
    model = GoogleModel("gemini-test", base_url="http://127.0.0.1:9", api_key="gk-test")

    with pytest.raises(ModelHTTPError) as info:
        request(model, ask("hi"))

    assert (info.value.transient, info.value.status_code) == (True, None)
    assert "127.0.0.1:9" in str(info.value)


def test_request_with_retries_retries_a_server_error(server: FakeProviderServer) -> None:
    server.enqueue(gemini_error(503, "overloaded"), gemini_response([text("ok")]))
    model = model_for(server)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> ModelResponse:
        async with model:
            return await request_with_retries(
                lambda: model.request(ask("hi"), None, ModelRequestParameters()), RetryConfig(), sleep=fake_sleep
            )

    assert asyncio.run(go()).text == "ok"
    assert (len(server.requests), len(slept)) == (2, 1)


def test_one_model_serves_several_event_loops(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text("one")]), gemini_response([text("two")]))
    model = model_for(server)

    async def go() -> str | None:
        return (await model.request(ask("hi"), None, ModelRequestParameters())).text

    assert asyncio.run(go()) == "one"
    assert asyncio.run(go()) == "two"


def test_passed_client_is_used(server: FakeProviderServer) -> None:
    from google import genai

    server.enqueue(gemini_response([text("via my client")]))
    client = genai.Client(api_key="gk-mine", http_options={"base_url": server.url})

    async def go() -> str | None:
        model = GoogleModel("gemini-test", client=client)
        assert model.system == "gcp.gemini"
        try:
            return (await model.request(ask("hi"), None, ModelRequestParameters())).text
        finally:
            await client.aio.aclose()

    assert asyncio.run(go()) == "via my client"
    client.close()
    assert server.requests[0].headers["x-goog-api-key"] == "gk-mine"


def test_infer_model_builds_a_google_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "gk-env")

    model = infer_model("google:gemini-2.5-flash")

    assert isinstance(model, GoogleModel)
    assert (model.model_name, model.system) == ("gemini-2.5-flash", "gcp.gemini")


def test_missing_key_says_which_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)

    with pytest.raises(UserError, match="GOOGLE_API_KEY"):
        infer_model("google:gemini-2.5-flash")
    with pytest.raises(UserError, match="GEMINI_API_KEY"):
        GoogleModel("gemini-2.5-flash")


def test_usage_splits_cached_input(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text("ok")], usage=usage_metadata(100, 5, cached=60)))

    usage = request(model_for(server), ask("hi")).usage

    assert (usage.input_tokens, usage.cache_read_tokens, usage.total_input_tokens) == (40, 60, 100)


def test_streamed_and_whole_responses_agree_with_thinking(server: FakeProviderServer) -> None:
    chunks = [
        [text("Thinking about ", thought=True)],
        [text("the weather.", thought=True)],
        [call("get_weather", {"city": "Paris"}, id="fc-1", signature=b"sig-1"), call("get_weather", {"city": "Rome"})],
    ]
    server.enqueue(gemini_response([part for chunk in chunks for part in chunk]), gemini_stream(chunks))
    model = model_for(server, include_thoughts=True)
    params = ModelRequestParameters([WEATHER])

    whole = request(model, ask("Paris and Rome?"), params)
    _, streamed = stream(model, ask("Paris and Rome?"), params)

    def comparable(response: ModelResponse) -> list[Any]:
        # Streamed arguments arrive as JSON text, and made-up ids differ between two responses.
        def same(part: Any) -> Any:
            if not isinstance(part, ToolCallPart):
                return part
            made_up = part.tool_call_id.startswith("pdcall_")
            return (part.tool_name, part.args_as_dict(), "made-up" if made_up else part.tool_call_id)

        return [same(p) for p in response.parts]

    assert comparable(streamed) == comparable(whole)
    assert whole.parts[0] == ThinkingPart(content="Thinking about the weather.", provider_name="google")
    assert [type(p).__name__ for p in whole.parts] == ["ThinkingPart", "ThinkingPart", "ToolCallPart", "ToolCallPart"]


def test_safety_stop_without_content(server: FakeProviderServer) -> None:
    server.enqueue(
        Canned(body={"candidates": [{"finishReason": "SAFETY", "index": 0}], "usageMetadata": usage_metadata(5, 0)})
    )

    response = request(model_for(server), ask("something blocked"))

    assert (response.parts, response.finish_reason) == ([], "SAFETY")


def test_blocked_prompt_is_unexpected_behaviour(server: FakeProviderServer) -> None:
    server.enqueue(Canned(body={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage_metadata(5, 0)}))

    with pytest.raises(UnexpectedModelBehavior, match="blocked: SAFETY"):
        request(model_for(server), ask("something blocked"))


def test_request_controls(server: FakeProviderServer) -> None:
    server.enqueue(gemini_response([text("ok")]))
    settings = {
        "extra_headers": {"x-trace": "t-1"},
        "extra_body": {"labels": {"team": "agents"}},
        "timeout": 30.0,
        "stop_sequences": ["END"],
        "seed": 7,
    }

    request(model_for(server), ask("hi"), settings=settings)

    sent = server.requests[0]
    assert sent.headers["x-trace"] == "t-1"
    assert sent.body["labels"] == {"team": "agents"}
    assert (sent.body["generationConfig"]["stopSequences"], sent.body["generationConfig"]["seed"]) == (["END"], 7)
