"""Provider features through durable runs: ``DurableAgent`` with a journal in tmp_path, real SDK clients, the
loopback server. What a provider returned is recorded once and replayed exactly on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from perdure import Agent, DurableAgent, RunWaiting
from perdure.messages import ModelMessagesTypeAdapter, ModelResponse, ThinkingPart
from perdure.models.anthropic import AnthropicModel

from .fake_server import FakeProviderServer, anthropic_message, anthropic_message_blocks

# Provenance: "Extended thinking" → "Extended thinking with tool use": the first answer is a signed thinking
# block then a tool_use block; after the tool result, the last assistant turn goes back with its thinking block
# unmodified, and the model answers with text.
SIGNATURE = "EuYBCkQYAiJAgCs1le6/Pol5FQBgMWj+ERI8mFPTx/3ZzBjTh0TyaFK6j1rRwa6B3XJkqt/TVrLCsgE1gJrWFRrTlRZ6JQpIMhIM"
THINKING = "The user asks for the weather in Paris. I need get_weather, and the user must approve it."


def weather_agent(server: FakeProviderServer) -> Agent[None, str]:
    model = AnthropicModel("claude-test", base_url=server.anthropic_base_url, api_key="sk-ant-test")
    agent = Agent(model, name="weather", model_settings={"thinking_budget": 2048})

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
        DurableAgent(weather_agent(server), journal=journal).run_sync("Weather in Paris?", run_id="w")
    assert len(server.requests) == 1
    assert server.last_body["thinking"] == {"type": "enabled", "budget_tokens": 2048}

    # Another process, another model object: all it has is the journal.
    server.enqueue(anthropic_message("Sunny in Paris."))
    durable = DurableAgent(weather_agent(server), journal=journal)
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
