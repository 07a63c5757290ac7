"""Model strings for OpenAI-compatible servers (Ollama, vLLM, LM Studio, OpenRouter), through the real SDK."""

from __future__ import annotations

import asyncio

import pytest

from perdure._exceptions import UserError
from perdure.messages import ModelRequest, UserPromptPart
from perdure.models import OPENAI_COMPATIBLE_PRESETS, ModelRequestParameters, infer_model
from perdure.models.openai import OpenAIModel

from .fake_server import FakeProviderServer, openai_completion


@pytest.mark.parametrize(
    ("provider", "base_url"),
    [
        ("ollama", "http://localhost:11434/v1"),
        ("vllm", "http://localhost:8000/v1"),
        ("lmstudio", "http://localhost:1234/v1"),
        ("openrouter", "https://openrouter.ai/api/v1"),
    ],
)
def test_preset_default_base_urls(provider: str, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, url_env, key_env, _ = OPENAI_COMPATIBLE_PRESETS[provider]
    monkeypatch.delenv(url_env, raising=False)
    monkeypatch.setenv(key_env, "key-from-env")

    model = infer_model(f"{provider}:some/model:tag")

    assert isinstance(model, OpenAIModel)
    assert (model.model_name, model.system, model.base_url) == ("some/model:tag", provider, base_url)


def test_ollama_preset_talks_to_the_server_in_its_env_var(
    server: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", server.openai_base_url)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    server.enqueue(openai_completion("hi from llama", model="llama3.2:3b"))
    model = infer_model("ollama:llama3.2:3b")

    async def go() -> str | None:
        messages = [ModelRequest(parts=[UserPromptPart(content="hi")])]
        return (await model.request(messages, {"max_tokens": 50}, ModelRequestParameters())).text

    assert asyncio.run(go()) == "hi from llama"
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "llama3.2:3b"
    assert sent.body["max_tokens"] == 50  # local servers get max_tokens
    # The user's OpenAI key never goes to another server.
    assert "sk-real-openai-key" not in sent.headers["authorization"]


def test_openrouter_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)

    with pytest.raises(UserError, match="OPENROUTER_API_KEY"):
        infer_model("openrouter:anthropic/claude-sonnet-4.5")


def test_openrouter_sends_its_key(server: FakeProviderServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    server.enqueue(openai_completion("routed"))
    model = infer_model("openrouter:anthropic/claude-sonnet-4.5")

    async def go() -> str | None:
        messages = [ModelRequest(parts=[UserPromptPart(content="hi")])]
        return (await model.request(messages, None, ModelRequestParameters())).text

    assert asyncio.run(go()) == "routed"
    assert server.last_body["model"] == "anthropic/claude-sonnet-4.5"
    assert server.requests[0].headers["authorization"] == "Bearer sk-or-test"


def test_unknown_provider_lists_the_presets() -> None:
    with pytest.raises(UserError) as info:
        infer_model("mistral:large")

    for known in ("ollama", "vllm", "lmstudio", "openrouter", "google", "openai-responses"):
        assert known in str(info.value)
