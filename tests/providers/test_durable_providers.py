"""Provider features through durable runs: ``DurableAgent`` with a journal in tmp_path, real SDK clients, the
loopback server. What a provider returned is recorded once and replayed exactly on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from perdure import Agent, DurableAgent, RunWaiting
from perdure.messages import ModelMessagesTypeAdapter, ModelResponse, ThinkingPart
from perdure.models import ModelSettings
from perdure.models.anthropic import AnthropicModel

from .fake_server import FakeProviderServer, anthropic_message, anthropic_message_blocks

# Provenance: "Extended thinking" → "Extended thinking with tool use": the first answer is a signed thinking
# block then a tool_use block; after the tool result, the last assistant turn goes back with its thinking block
# unmodified, and the model answers with text.
SIGNATURE = "EuYBCkQYAiJAgCs1le6/Pol5FQBgMWj+ERI8mFPTx/3ZzBjTh0TyaFK6j1rRwa6B3XJkqt/TVrLCsgE1gJrWFRrTlRZ6JQpIMhIM"
THINK: ModelSettings = {"thinking_budget": 2048}
THINKING = "The user asks for the weather in Paris. I need get_weather, and the user must approve it."


def weather_agent(
    server: FakeProviderServer, *, settings: ModelSettings | None = None, instructions: str | None = None
) -> Agent[None, str]:
    model = AnthropicModel("claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test")
    agent = Agent(model, name="weather", model_settings=settings, instructions=instructions)

    @agent.tool_plain(requires_approval=True)
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


def test_thinking_with_tool_use_survives_a_resume_from_the_journal(server: FakeProviderServer, tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    server.enqueue(
        anthropic_message_blocks(
            [
                {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            stop_reason="tool_use",
        )
    )
    with pytest.raises(RunWaiting):
        DurableAgent(weather_agent(server, settings=THINK), journal=journal).run_sync("Weather in Paris?", run_id="w")
    assert len(server.requests) == 1
    assert server.last_body["thinking"] == {"type": "enabled", "budget_tokens": 2048}

    # Another process, another model object: all it has is the journal.
    server.enqueue(anthropic_message("Sunny in Paris."))
    durable = DurableAgent(weather_agent(server, settings=THINK), journal=journal)
    durable.approve_sync("w", "toolu_01")
    result = durable.resume_sync("w")

    assert result.output == "Sunny in Paris."
    assert len(server.requests) == 2  # the first answer came from the journal, not from the model
    messages = server.last_body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert messages[2]["content"][0]["type"] == "tool_result"

    replayed = next(m for m in result.all_messages() if isinstance(m, ModelResponse))
    assert replayed.parts[0] == ThinkingPart(content=THINKING, signature=SIGNATURE, provider_name="anthropic")
    # The history serializes and loads back with the thinking part as it was.
    again = ModelMessagesTypeAdapter.validate_json(result.all_messages_json())
    assert again == result.all_messages()

    # A finished run returns its recorded result: nothing is asked of the model again.
    assert durable.resume_sync("w").all_messages() == result.all_messages()
    assert len(server.requests) == 2


def test_request_controls_are_part_of_the_run_input_and_hold_after_resume(
    server: FakeProviderServer, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.db"
    settings: ModelSettings = {
        "anthropic_cache": ["instructions"],
        "user": "user-42",
        "extra_headers": {"x-team": "support"},
        "extra_body": {"top_k": 3},
    }
    server.enqueue(
        anthropic_message_blocks(
            [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
            stop_reason="tool_use",
        )
    )
    agent = weather_agent(server, instructions="Be brief.")
    with pytest.raises(RunWaiting):
        DurableAgent(agent, journal=journal).run_sync("Weather in Paris?", run_id="c", model_settings=settings)

    server.enqueue(anthropic_message("Sunny."))
    durable = DurableAgent(weather_agent(server, instructions="Be brief."), journal=journal)
    durable.approve_sync("c", "toolu_01")
    assert durable.resume_sync("c").output == "Sunny."

    for sent in server.requests:  # the resumed attempt's request is made with the run's own settings
        assert sent.body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
        assert sent.body["metadata"] == {"user_id": "user-42"}
        assert sent.body["top_k"] == 3
        assert sent.headers["x-team"] == "support"
