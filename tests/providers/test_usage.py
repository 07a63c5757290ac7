"""Full usage: cache reads and writes, reasoning tokens, per request and in run totals, in limits, and in
journals written before these counters existed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from perdure import Agent, DurableAgent, Usage, UsageLimitExceeded, UsageLimits
from perdure.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest, ModelResponse, UserPromptPart
from perdure.models import ModelRequestParameters, StreamEvent
from perdure.models.anthropic import AnthropicModel
from perdure.models.openai import OpenAIModel
from perdure.usage import RequestUsage

from .fake_server import Canned, FakeProviderServer, anthropic_block_stream, anthropic_message_blocks, openai_stream

# Provenance: OpenAI "Prompt caching" guide (a cached prefix shows in prompt_tokens_details.cached_tokens, a
# part of prompt_tokens) and "Reasoning models" (completion_tokens_details.reasoning_tokens, a part of
# completion_tokens).
OPENAI_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 192,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
OPENAI_EXPECTED = RequestUsage(input_tokens=86, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=192)

# Provenance: Anthropic "Prompt caching" → "Tracking cache performance": cache_creation_input_tokens and
# cache_read_input_tokens are counted apart from input_tokens (the tokens after the last cache breakpoint).
ANTHROPIC_USAGE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 1500,
    "output_tokens": 393,
}
ANTHROPIC_EXPECTED = RequestUsage(input_tokens=21, output_tokens=393, cache_read_tokens=1500, cache_write_tokens=188086)


def ask(prompt: str) -> list[ModelMessage]:
    return [ModelRequest(parts=[UserPromptPart(content=prompt)])]


def openai_model(server: FakeProviderServer) -> OpenAIModel:
    return OpenAIModel("gpt-test", base_url=server.openai_base_url, api_key="sk-test")


def anthropic_model(server: FakeProviderServer) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test")


def request(model: Any) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model:
            response: ModelResponse = await model.request(ask("hi"), None, ModelRequestParameters())
            return response

    return asyncio.run(go())


def stream(model: Any) -> ModelResponse:
    async def go() -> ModelResponse:
        async with model, model.request_stream(ask("hi"), None, ModelRequestParameters()) as streamed:
            events: list[StreamEvent] = [event async for event in streamed]
            assert events
            response: ModelResponse = streamed.get()
            return response

    return asyncio.run(go())


def openai_completion_with_usage() -> Canned:
    return Canned(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": OPENAI_USAGE,
        }
    )


def test_openai_cached_and_reasoning_tokens(server: FakeProviderServer) -> None:
    server.enqueue(openai_completion_with_usage())

    usage = request(openai_model(server)).usage

    assert usage == OPENAI_EXPECTED
    assert (usage.total_input_tokens, usage.total_tokens) == (2006, 2306)


def test_openai_streamed_usage_chunk(server: FakeProviderServer) -> None:
    canned = openai_stream(["ok"])
    assert canned.events is not None
    last_chunk = canned.events[-2][1]
    last_chunk["usage"] = OPENAI_USAGE  # the include_usage chunk: no choices, the request's usage
    server.enqueue(canned)

    assert stream(openai_model(server)).usage == OPENAI_EXPECTED


def test_anthropic_cache_tokens_are_not_folded_into_input_tokens(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message_blocks([{"type": "text", "text": "ok"}], usage=ANTHROPIC_USAGE))

    usage = request(anthropic_model(server)).usage

    assert usage == ANTHROPIC_EXPECTED
    assert usage.total_input_tokens == 21 + 188086 + 1500


def test_anthropic_streamed_usage(server: FakeProviderServer) -> None:
    # Provenance: "Streaming Messages": message_start carries the input side of usage; message_delta carries
    # the cumulative output_tokens (and may restate the input side).
    start = {**ANTHROPIC_USAGE, "output_tokens": 1}
    server.enqueue(
        anthropic_block_stream(
            [({"type": "text", "text": ""}, [{"type": "text_delta", "text": "ok"}])],
            start_usage=start,
            end_usage={"output_tokens": 393},
        )
    )

    assert stream(anthropic_model(server)).usage == ANTHROPIC_EXPECTED


def test_anthropic_thinking_tokens_are_reasoning_tokens(server: FakeProviderServer) -> None:
    usage = {"input_tokens": 50, "output_tokens": 400, "output_tokens_details": {"thinking_tokens": 350}}
    server.enqueue(anthropic_message_blocks([{"type": "text", "text": "ok"}], usage=usage))

    assert request(anthropic_model(server)).usage == RequestUsage(
        input_tokens=50, output_tokens=400, reasoning_tokens=350
    )


def cached_agent(server: FakeProviderServer, name: str = "cached") -> Agent[None, str]:
    return Agent(anthropic_model(server), name=name)


def test_run_totals_add_every_counter(server: FakeProviderServer, tmp_path: Path) -> None:
    server.enqueue(anthropic_message_blocks([{"type": "text", "text": "ok"}], usage=ANTHROPIC_USAGE))
    durable = DurableAgent(cached_agent(server), journal=tmp_path / "journal.db")

    result = durable.run_sync("hi", run_id="u")

    expected = Usage(requests=1, input_tokens=21, output_tokens=393, cache_read_tokens=1500, cache_write_tokens=188086)
    assert result.usage() == expected
    # Recorded: the finished run's usage comes back from the journal, nothing asked again.
    assert durable.resume_sync("u").usage() == expected
    assert len(server.requests) == 1


def test_usage_limits_bound_cache_writes(server: FakeProviderServer) -> None:
    server.enqueue(anthropic_message_blocks([{"type": "text", "text": "ok"}], usage=ANTHROPIC_USAGE))

    with pytest.raises(UsageLimitExceeded, match=r"cache_write_tokens_limit of 100000 \(cache_write_tokens=188086\)"):
        cached_agent(server).run_sync("hi", usage_limits=UsageLimits(cache_write_tokens_limit=100_000))


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        (UsageLimits(reasoning_tokens_limit=100), "reasoning_tokens"),
        (UsageLimits(cache_read_tokens_limit=100), "cache_read_tokens"),
        (UsageLimits(total_tokens_limit=2000), "total_tokens"),
    ],
)
def test_usage_limits_understand_the_new_counters(limits: UsageLimits, name: str) -> None:
    usage = Usage(requests=1, input_tokens=86, output_tokens=300, cache_read_tokens=1920, reasoning_tokens=192)

    with pytest.raises(UsageLimitExceeded, match=f"{name}_limit"):
        limits.check_after_response(usage)


def test_usage_recorded_before_the_new_counters_still_loads() -> None:
    # What journals and histories written by earlier versions hold.
    old_run_usage = {"requests": 2, "input_tokens": 120, "output_tokens": 30, "tool_calls": 1}
    assert Usage(**old_run_usage) == Usage(2, 120, 30, 1)
    assert Usage(**old_run_usage).total_tokens == 150
    old_history = (
        b'[{"parts":[{"content":"hi","part_kind":"user-prompt"}],"instructions":null,"kind":"request"},'
        b'{"parts":[{"content":"ok","part_kind":"text"}],"usage":{"input_tokens":12,"output_tokens":3},'
        b'"model_name":"gpt-4.1-mini","finish_reason":"stop","timestamp":"2026-01-05T10:00:00Z","kind":"response"}]'
    )
    response = ModelMessagesTypeAdapter.validate_json(old_history)[1]
    assert isinstance(response, ModelResponse)
    assert response.usage == RequestUsage(input_tokens=12, output_tokens=3)
