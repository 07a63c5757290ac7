"""``FallbackModel`` with real SDK clients against the loopback server: the next model answers when one fails,
and a durable run records which model answered, so a resume replays that answer and asks no model again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from perdure import Agent, DurableAgent, RunWaiting, UserError
from perdure._exceptions import ModelHTTPError, UnexpectedModelBehavior
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, UserPromptPart
from perdure.models import FallbackModel, ModelRequestParameters, RetryConfig, StreamEvent
from perdure.models.anthropic import AnthropicModel
from perdure.models.openai import OpenAIModel

from .fake_server import (
    FakeProviderServer,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_error,
)

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


async def no_sleep(seconds: float) -> None:
    pass


def fallback(server: FakeProviderServer, **options: Any) -> FallbackModel:
    primary = OpenAIModel("gpt-test", base_url=server.openai_base_url, api_key="sk-test")
    secondary = AnthropicModel("claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test")
    return FallbackModel(primary, secondary, sleep=no_sleep, **options)


def ask(prompt: str) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)])]


def request(model: FallbackModel) -> ModelResponse:
    async def go() -> ModelResponse:
        return await model.request(ask("hi"), None, ModelRequestParameters())

    return asyncio.run(go())


def paths(server: FakeProviderServer) -> list[str]:
    return [r.path for r in server.requests]


def test_a_terminal_error_hands_the_request_to_the_next_model(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(400, "This model's maximum context length is 128000 tokens"), anthropic_message("hi"))

    response = request(fallback(server))

    assert response.text == "hi"
    assert response.model_name == "claude-test"  # which model answered
    assert paths(server) == [OPENAI_PATH, ANTHROPIC_PATH]  # a 400 is not retried


def test_transient_errors_are_retried_before_falling_back(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(503, "Service unavailable"), openai_error(503, "Service unavailable"))
    server.enqueue(anthropic_message("hi"))

    response = request(fallback(server, retry=RetryConfig(max_attempts=2)))

    assert response.model_name == "claude-test"
    assert paths(server) == [OPENAI_PATH, OPENAI_PATH, ANTHROPIC_PATH]


def test_the_primary_answers_when_it_can(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(429, "Rate limit reached"), openai_completion("from the primary", model="gpt-test-1"))

    response = request(fallback(server))

    assert response.model_name == "gpt-test-1"
    assert paths(server) == [OPENAI_PATH, OPENAI_PATH]


def test_when_every_model_fails_the_error_lists_each_and_is_terminal(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(401, "Incorrect API key provided"), anthropic_error(529, "Overloaded"))

    with pytest.raises(ModelHTTPError) as info:
        request(fallback(server, retry=RetryConfig(max_attempts=1)))

    assert info.value.transient is False  # each model had its retries: the engine must not start over
    assert info.value.status_code == 529
    message = str(info.value)
    assert "every model of fallback:gpt-test,claude-test failed" in message
    assert "Incorrect API key provided" in message and "Overloaded" in message


def test_errors_outside_fallback_on_are_raised_at_once(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(400, "bad request"))

    with pytest.raises(ModelHTTPError, match="bad request"):
        request(fallback(server, fallback_on=(UnexpectedModelBehavior,)))
    assert paths(server) == [OPENAI_PATH]


def test_a_stream_that_cannot_open_falls_back(server: FakeProviderServer) -> None:
    server.enqueue(openai_error(500, "The server had an error"), anthropic_stream(["Hel", "lo"]))
    model = fallback(server, retry=RetryConfig(max_attempts=1))

    async def go() -> tuple[list[StreamEvent], ModelResponse]:
        async with model.request_stream(ask("hi"), None, ModelRequestParameters()) as streamed:
            return [e async for e in streamed], streamed.get()

    events, response = asyncio.run(go())

    assert response.text == "Hello"
    assert response.model_name == "claude-test"
    assert len(events) == 2


def test_names_and_construction(server: FakeProviderServer) -> None:
    model = fallback(server)
    assert model.model_name == "fallback:gpt-test,claude-test"
    assert model.system == "openai"
    with pytest.raises(UserError, match="at least two models"):
        FallbackModel(model.models[0])


def test_a_resumed_run_replays_the_fallback_answer(server: FakeProviderServer, tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"

    def agent() -> Agent[None, str]:
        built: Agent[None, str] = Agent(fallback(server, retry=RetryConfig(max_attempts=1)), name="fallback")

        @built.tool_plain(requires_approval=True)
        def refund(order: int) -> str:
            """Refund an order."""
            return f"refunded {order}"

        return built

    # Turn 1: the primary refuses, the secondary asks for the tool; the run waits for an approval.
    server.enqueue(
        openai_error(400, "Invalid request"),
        anthropic_message(tool_uses=[("toolu_01", "refund", {"order": 42})]),
    )
    with pytest.raises(RunWaiting):
        DurableAgent(agent(), journal=journal).run_sync("Refund order 42", run_id="f")
    assert paths(server) == [OPENAI_PATH, ANTHROPIC_PATH]

    # Another process resumes: turn 1 is the recorded answer (neither model is asked), turn 2 is new.
    server.enqueue(openai_completion("Refunded order 42."))
    durable = DurableAgent(agent(), journal=journal)
    durable.approve_sync("f", "toolu_01")
    result = durable.resume_sync("f")

    assert result.output == "Refunded order 42."
    assert paths(server) == [OPENAI_PATH, ANTHROPIC_PATH, OPENAI_PATH]
    answers = [m for m in result.all_messages() if isinstance(m, ModelResponse)]
    assert [a.model_name for a in answers] == ["claude-test", "gpt-test"]
    # The replayed answer went to the primary in its own wire format, tool call and all.
    assistant = server.last_body["messages"][1]
    assert assistant["tool_calls"][0]["function"] == {"name": "refund", "arguments": '{"order": 42}'}
