"""Models: the protocol every provider implements, and ``infer_model`` for model strings.

Provider SDKs are optional extras, imported lazily: ``import perdure`` never imports ``openai`` or
``anthropic``.
"""

from __future__ import annotations

import asyncio
import os
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from typing_extensions import TypedDict  # pydantic validates only this TypedDict on 3.11

from .._exceptions import ModelHTTPError, UserError
from ..messages import ModelMessage, ModelResponse, TextPart, ThinkingPart, ToolCallPart
from ..usage import RequestUsage

__all__ = [
    "KNOWN_PROVIDERS",
    "OPENAI_COMPATIBLE_PRESETS",
    "FallbackModel",
    "Model",
    "ModelRequestParameters",
    "ModelSettings",
    "RetryConfig",
    "StreamEvent",
    "StreamedResponse",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallDelta",
    "ToolDefinition",
    "infer_model",
    "request_with_retries",
]


class ModelSettings(TypedDict, total=False):
    """Settings passed to the provider; every key is optional.

    A provider ignores the keys it has no use for, so one settings dict can serve several providers (a
    ``FallbackModel``'s models, say); each key says which providers read it. The settings are part of a run's
    input: a durable run resumes with the settings it started with.
    """

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    """Anthropic, Gemini, and OpenAI-compatible servers (vLLM, Ollama, ...); OpenAI's own API has none."""
    timeout: float
    seed: int
    parallel_tool_calls: bool
    stop_sequences: list[str]
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
    """OpenAI reasoning models (and compatible servers that take it): how hard the model thinks."""
    thinking_budget: int
    """Anthropic extended thinking and Gemini thinking: the tokens the model may think with (Anthropic: at
    least 1024). ``0`` turns thinking off; ``-1`` lets the model decide (Anthropic's adaptive thinking)."""
    include_thoughts: bool
    """Gemini: thought summaries in the response."""
    strict_tools: bool
    """OpenAI, Anthropic: tool arguments are guaranteed to match the tool's schema (every property must be
    required; ``additionalProperties: false`` is added where the schema does not say)."""
    strict_output: bool
    """OpenAI: native structured output is guaranteed to match its schema (Anthropic's always is)."""
    anthropic_cache: bool | list[Literal["instructions", "tools", "messages"]]
    """Anthropic prompt caching: a ``cache_control`` breakpoint after the instructions, the tool definitions
    and the last message (``True``: all three), so the next request reads that prefix from the cache."""
    anthropic_cache_ttl: Literal["5m", "1h"]
    """Anthropic: how long cached prefixes live (the API's default is 5 minutes)."""
    prompt_cache_key: str
    """OpenAI: groups requests that share a prefix, for better cache hits."""
    user: str
    """An id for the end user: OpenAI's ``user``, Anthropic's ``metadata.user_id``."""
    service_tier: str
    """OpenAI: ``auto``, ``default``, ``flex``, ``priority``; Anthropic: ``auto``, ``standard_only``."""
    extra_headers: dict[str, str]
    """HTTP headers added to every request (OpenAI, Anthropic)."""
    extra_body: dict[str, Any]
    """Fields added to the request body as they are, over perdure's own (OpenAI, Anthropic)."""


@dataclass(frozen=True)
class ToolDefinition:
    """What the model is told about one tool."""

    name: str
    description: str
    parameters_json_schema: dict[str, Any]
    kind: Literal["function", "output"] = "function"


@dataclass(frozen=True)
class ModelRequestParameters:
    """Tools and output mode of one model request."""

    function_tools: list[ToolDefinition] = field(default_factory=list)
    output_tools: list[ToolDefinition] = field(default_factory=list)
    allow_text_output: bool = True
    native_output: ToolDefinition | None = None
    """Set when the agent asks for provider-native JSON-schema output instead of an output tool."""

    @property
    def tools(self) -> list[ToolDefinition]:
        return [*self.function_tools, *self.output_tools]


@dataclass
class TextDelta:
    """A piece of text streamed by the model."""

    index: int
    content: str
    kind: Literal["text-delta"] = "text-delta"


@dataclass
class ToolCallDelta:
    """A piece of a tool call streamed by the model (name and id arrive first, then argument JSON)."""

    index: int
    tool_name: str | None = None
    args_delta: str = ""
    tool_call_id: str | None = None
    kind: Literal["tool-call-delta"] = "tool-call-delta"


@dataclass
class ThinkingDelta:
    """A piece of the model's reasoning; ``signature`` pieces are appended, as content is."""

    index: int
    content: str = ""
    signature: str | None = None
    redacted: bool = False
    provider_name: str | None = None
    id: str | None = None
    provider_data: dict[str, Any] | None = None
    kind: Literal["thinking-delta"] = "thinking-delta"


StreamEvent = TextDelta | ToolCallDelta | ThinkingDelta


class StreamedResponse:
    """A model response arriving piece by piece. Iterate it for events; ``get()`` is the response so far."""

    def __init__(self, events: AsyncIterator[StreamEvent], *, model_name: str) -> None:
        self._events = events
        self.model_name = model_name
        self.usage = RequestUsage()
        self.finish_reason: str | None = None
        self._parts: dict[int, TextPart | ToolCallPart | ThinkingPart] = {}
        self._args: dict[int, str] = {}

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        async for event in self._events:
            self._apply(event)
            yield event

    def _apply(self, event: StreamEvent) -> None:
        part = self._parts.get(event.index)
        if isinstance(event, TextDelta):
            if isinstance(part, TextPart):
                part.content += event.content
            else:
                self._parts[event.index] = TextPart(content=event.content)
        elif isinstance(event, ThinkingDelta):
            if not isinstance(part, ThinkingPart):
                part = ThinkingPart(provider_name=event.provider_name)
                self._parts[event.index] = part
            part.content += event.content
            if event.signature:
                part.signature = (part.signature or "") + event.signature
            if event.redacted:
                part.redacted = True
            if event.provider_name and not part.provider_name:
                part.provider_name = event.provider_name
            if event.id:
                part.id = event.id
            if event.provider_data:
                part.provider_data = {**(part.provider_data or {}), **event.provider_data}
        else:
            if not isinstance(part, ToolCallPart):
                part = ToolCallPart(tool_name=event.tool_name or "", args="", tool_call_id=event.tool_call_id or "")
                self._parts[event.index] = part
            if event.tool_name and not part.tool_name:
                part.tool_name = event.tool_name
            if event.tool_call_id and not part.tool_call_id:
                part.tool_call_id = event.tool_call_id
            self._args[event.index] = self._args.get(event.index, "") + event.args_delta

    def get(self) -> ModelResponse:
        parts: list[TextPart | ToolCallPart | ThinkingPart] = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if isinstance(part, ToolCallPart):
                part = part.model_copy(update={"args": self._args.get(index, "") or "{}"})
            parts.append(part)
        return ModelResponse(
            parts=parts, usage=self.usage, model_name=self.model_name, finish_reason=self.finish_reason
        )


class Model(ABC):
    """A model provider. Implement ``request`` (and ``request_stream`` for streaming)."""

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @property
    def system(self) -> str:
        """The provider's name, as in GenAI semantic conventions (``openai``, ``anthropic``)."""
        return "perdure"

    @abstractmethod
    async def request(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        """Send the conversation; return the model's response. Raise ``ModelHTTPError`` on provider errors."""

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        """Stream the response. The default asks ``request`` and replays it as events."""
        response = await self.request(messages, settings, params)

        async def events() -> AsyncIterator[StreamEvent]:
            for index, part in enumerate(response.parts):
                if isinstance(part, TextPart):
                    yield TextDelta(index, part.content)
                elif isinstance(part, ThinkingPart):
                    yield ThinkingDelta(
                        index,
                        part.content,
                        signature=part.signature,
                        redacted=part.redacted,
                        provider_name=part.provider_name,
                        id=part.id,
                        provider_data=part.provider_data,
                    )
                else:
                    yield ToolCallDelta(index, part.tool_name, part.args_as_json_str(), part.tool_call_id)

        stream = StreamedResponse(events(), model_name=response.model_name or self.model_name)
        stream.usage = response.usage
        stream.finish_reason = response.finish_reason
        yield stream


_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retries of transient model errors (timeouts, 429, 5xx): bounded, exponential backoff with jitter.

    ``Retry-After`` from the provider is honoured up to ``max_delay``.
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0


async def request_with_retries(
    send: Callable[[], Awaitable[_T]],
    config: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[ModelHTTPError, int], None] | None = None,
) -> _T:
    """Call ``send``, retrying transient ``ModelHTTPError``s; terminal errors are raised at once.

    ``send`` usually asks for a ``ModelResponse``; it may return anything (``FallbackModel`` opens streams).
    """
    attempt = 1
    while True:
        try:
            return await send()
        except ModelHTTPError as e:
            if not e.transient or attempt >= config.max_attempts:
                raise
            delay = min(config.max_delay, config.initial_delay * config.multiplier ** (attempt - 1))
            delay *= 0.5 + random.random() / 2
            if e.retry_after is not None:
                delay = min(config.max_delay, max(delay, e.retry_after))
            if on_retry is not None:
                on_retry(e, attempt)
            await sleep(delay)
            attempt += 1


KNOWN_PROVIDERS = (
    "openai",
    "openai-responses",
    "anthropic",
    "google",
    "ollama",
    "vllm",
    "lmstudio",
    "openrouter",
    "test",
)
_ENV_KEYS = {
    "openai": "OPENAI_API_KEY",
    "openai-responses": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GOOGLE_API_KEY",
}

OPENAI_COMPATIBLE_PRESETS: dict[str, tuple[str, str, str, bool]] = {
    # provider: (default base_url, env var overriding it, API key env var, whether the key is required)
    "ollama": ("http://localhost:11434/v1", "OLLAMA_BASE_URL", "OLLAMA_API_KEY", False),
    "vllm": ("http://localhost:8000/v1", "VLLM_BASE_URL", "VLLM_API_KEY", False),
    "lmstudio": ("http://localhost:1234/v1", "LMSTUDIO_BASE_URL", "LMSTUDIO_API_KEY", False),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_BASE_URL", "OPENROUTER_API_KEY", True),
}
"""Servers that speak OpenAI Chat Completions, by the name a model string starts with (``"ollama:llama3.2"``)."""


def _preset_model(provider: str, name: str, model: str) -> Model:
    default_url, url_env, key_env, key_required = OPENAI_COMPATIBLE_PRESETS[provider]
    api_key = os.environ.get(key_env) or None
    if key_required and api_key is None:
        raise UserError(
            f"model {model!r} needs an API key: set the {key_env} environment variable "
            f"(or construct OpenAIModel({name!r}, base_url=..., api_key=...) yourself)"
        )
    from .openai import OpenAIModel

    base_url = os.environ.get(url_env) or default_url
    # A placeholder rather than None: OpenAIModel would otherwise send OPENAI_API_KEY to this other server.
    return OpenAIModel(name, base_url=base_url, api_key=api_key or "not-needed", provider_name=provider)


def infer_model(model: Model | str) -> Model:
    """A ``Model`` from a string: ``"openai:gpt-4.1-mini"``, ``"anthropic:claude-sonnet-4-5"``, ``"test"``.

    Also ``"openai-responses:gpt-4.1"`` (the Responses API), ``"google:gemini-2.5-flash"``, and the
    OpenAI-compatible presets ``"ollama:llama3.2"``, ``"vllm:..."``, ``"lmstudio:..."``, ``"openrouter:..."``
    (see ``OPENAI_COMPATIBLE_PRESETS`` for their base URLs and the environment variables that override them).
    """
    if isinstance(model, Model):
        return model
    if not isinstance(model, str) or not model:
        raise UserError(f"model must be a Model or a string like 'openai:gpt-4.1-mini', not {model!r}")
    provider, sep, name = model.partition(":")
    if model == "test" or (provider == "test" and name):
        from .test import TestModel

        return TestModel(model_name=name or "test")
    if not sep or not name:
        raise UserError(
            f"unknown model {model!r}: write it as 'provider:model-name', with provider one of "
            f"{', '.join(KNOWN_PROVIDERS)} (e.g. 'openai:gpt-4.1-mini'), or pass a Model instance"
        )
    if provider in OPENAI_COMPATIBLE_PRESETS:
        return _preset_model(provider, name, model)
    if provider not in _ENV_KEYS:
        raise UserError(
            f"unknown model provider {provider!r} in {model!r}; known providers: {', '.join(KNOWN_PROVIDERS)}"
        )
    env = _ENV_KEYS[provider]
    if not os.environ.get(env) and not (provider == "google" and os.environ.get("GEMINI_API_KEY")):
        raise UserError(
            f"model {model!r} needs an API key: set the {env} environment variable "
            f"(or construct the model yourself with api_key=...)"
        )
    if provider == "openai":
        from .openai import OpenAIModel

        return OpenAIModel(name)
    if provider == "openai-responses":
        from .openai_responses import OpenAIResponsesModel

        return OpenAIResponsesModel(name)
    if provider == "google":
        from .google import GoogleModel

        return GoogleModel(name)
    from .anthropic import AnthropicModel

    return AnthropicModel(name)


def http_error_is_transient(status_code: int | None) -> bool:
    """Timeouts (no status), 408, 409, 429 and 5xx are transient; everything else is terminal."""
    return status_code is None or status_code in (408, 409, 429) or status_code >= 500


# Last: fallback.py builds on the definitions above.
from .fallback import FallbackModel  # noqa: E402
