"""Anthropic Messages API models (Claude).

Needs the ``anthropic`` extra (``pip install "perdure[anthropic]"``)::

    from perdure.models.anthropic import AnthropicModel

    model = AnthropicModel("claude-sonnet-4-5")  # key from ANTHROPIC_API_KEY

The SDK's own retries are switched off (``max_retries=0``): perdure retries transient errors itself, with
bounded backoff, so that a durable run records one model step however many attempts it took. SDK errors are
mapped here to ``ModelHTTPError``, whose ``transient`` flag says whether retrying can help.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .._exceptions import MissingExtra, ModelHTTPError, UserError
from ..messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from ..usage import RequestUsage
from . import (
    Model,
    ModelRequestParameters,
    ModelSettings,
    StreamedResponse,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolDefinition,
    http_error_is_transient,
)
from ._http import LoopClient as _LoopClient
from ._http import last_instructions as _last_instructions
from ._http import provider_message as _provider_message
from ._http import retry_after as _retry_after
from ._http import strict_schema as _strict_schema
from ._multimodal import anthropic_tool_result_content, anthropic_user_blocks

try:
    import anthropic
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("anthropic", "anthropic") from e

__all__ = ["AnthropicModel"]

DEFAULT_MAX_TOKENS = 4096
PROVIDER = "anthropic"
"""The ``provider_name`` of the thinking parts this module writes: only Anthropic can check their signatures."""
"""The Messages API requires ``max_tokens``; this is sent when ``ModelSettings`` has none."""

_PLACEHOLDER_KEY = "not-needed"

# The status an error type stands for, for errors sent as an event in the middle of a (200) stream.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicModel(Model):
    """A Claude model through the Anthropic Messages API.

    ``api_key`` defaults to the ``ANTHROPIC_API_KEY`` environment variable (``ANTHROPIC_AUTH_TOKEN`` works
    too); with ``base_url`` and no key, a placeholder key is sent. Pass ``client`` to use your own
    ``anthropic.AsyncAnthropic`` (it stays yours to close).

    Without ``client``, the model opens one SDK client per event loop and closes it when that loop shuts down
    (``asyncio.run`` finalizes it), so a model can serve many ``asyncio.run`` calls; ``await model.close()``
    closes the current loop's client earlier.
    """

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
    ) -> None:
        self._model_name = model_name
        self._base_url = base_url
        self._api_key: str | None = None
        self._fixed_client: Any = None
        if client is not None:
            if not isinstance(client, anthropic.AsyncAnthropic):
                raise UserError(
                    f"AnthropicModel(client=...) needs an anthropic.AsyncAnthropic, not {type(client).__name__}"
                )
            self._fixed_client = client.with_options(max_retries=0)
        else:
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
                if base_url is None:
                    raise UserError(
                        f"AnthropicModel({model_name!r}) needs an API key: set the ANTHROPIC_API_KEY "
                        "environment variable or pass api_key=..."
                    )
                key = _PLACEHOLDER_KEY
            self._api_key = key
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = weakref.WeakKeyDictionary()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def system(self) -> str:
        return "anthropic"

    @property
    def base_url(self) -> str:
        """Where requests go."""
        if self._fixed_client is not None:
            return str(self._fixed_client.base_url)
        return self._base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"

    def __repr__(self) -> str:
        return f"AnthropicModel({self._model_name!r}, base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the SDK client opened for the running event loop; a ``client`` you passed is left open."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.guard.aclose()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        client = await self._client()
        kwargs = self._message_kwargs(messages, settings, params)
        try:
            try:
                message = await client.messages.create(**kwargs)
            except ValueError as e:
                # The SDK refuses, before sending anything, a non-streaming request that may outlast its
                # 10-minute limit (a large max_tokens, e.g. 32000). The API itself answers the same request
                # streamed, so stream it and assemble the message the SDK's way: the caller still gets one
                # response, exactly as a non-streamed request would have given it.
                if not _sdk_demands_streaming(e):
                    raise
                async with client.messages.stream(**kwargs) as streamed:
                    message = await streamed.get_final_message()
        except anthropic.APIError as e:
            raise self._http_error(e) from e
        return self._parse_message(message)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        client = await self._client()
        kwargs = self._message_kwargs(messages, settings, params)
        try:
            raw_events = await client.messages.create(**kwargs, stream=True)
        except anthropic.APIError as e:
            raise self._http_error(e) from e
        async with raw_events:

            async def events() -> AsyncGenerator[StreamEvent, None]:
                block_types: dict[int, str] = {}
                try:
                    async for raw in raw_events:
                        for event in _stream_events(raw, streamed, block_types):
                            yield event
                except anthropic.APIError as e:
                    raise self._http_error(e) from e

            event_iterator = events()
            streamed = StreamedResponse(event_iterator, model_name=self._model_name)
            try:
                yield streamed
            finally:
                await event_iterator.aclose()

    # --- the SDK client ---------------------------------------------------------------------------------

    async def _client(self) -> Any:
        if self._fixed_client is not None:
            return self._fixed_client
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            options: dict[str, Any] = {"max_retries": 0}
            if self._api_key is not None:
                options["api_key"] = self._api_key
            if self._base_url is not None:
                options["base_url"] = self._base_url
            entry = await _LoopClient.open(anthropic.AsyncAnthropic(**options))
            self._clients[loop] = entry
        return entry.client

    # --- perdure → Messages API -------------------------------------------------------------------------

    def _message_kwargs(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> dict[str, Any]:
        settings = settings or {}
        system, chat = _anthropic_messages(messages)
        thinking = _thinking_config(settings)
        max_tokens = settings.get("max_tokens", DEFAULT_MAX_TOKENS)
        if thinking is not None and "budget_tokens" in thinking and "max_tokens" not in settings:
            # Thinking tokens count toward max_tokens, which must exceed the budget: leave room for the answer.
            max_tokens = thinking["budget_tokens"] + DEFAULT_MAX_TOKENS
        cache = _cache_targets(settings)
        cache_control: dict[str, Any] = {"type": "ephemeral"}
        if "anthropic_cache_ttl" in settings:
            cache_control["ttl"] = settings["anthropic_cache_ttl"]
        if "messages" in cache and chat:
            # The breakpoint goes on the last block of the last message: everything up to it is cached.
            chat[-1]["content"][-1] = {**chat[-1]["content"][-1], "cache_control": cache_control}
        kwargs: dict[str, Any] = {"model": self._model_name, "max_tokens": max_tokens, "messages": chat}
        if system:
            if "instructions" in cache:
                kwargs["system"] = [{"type": "text", "text": system, "cache_control": cache_control}]
            else:
                kwargs["system"] = system
        if thinking is not None:
            kwargs["thinking"] = thinking
        tools = [_tool(tool, strict=settings.get("strict_tools", False)) for tool in params.tools]
        if tools and "tools" in cache:
            tools[-1]["cache_control"] = cache_control
        if tools:
            kwargs["tools"] = tools
            # With thinking on, the API accepts only tool_choice auto (or none): a model that must call a tool
            # is asked to in the output tool's description and, failing that, by the loop's retry prompt.
            thinks = thinking is not None and thinking["type"] != "disabled"
            must_call = not params.allow_text_output and params.native_output is None and not thinks
            tool_choice: dict[str, Any] = {"type": "any" if must_call else "auto"}
            if settings.get("parallel_tool_calls") is False:
                tool_choice["disable_parallel_tool_use"] = True
            if must_call or len(tool_choice) > 1:
                kwargs["tool_choice"] = tool_choice
        if params.native_output is not None:
            kwargs["output_config"] = {
                "format": {"type": "json_schema", "schema": params.native_output.parameters_json_schema}
            }
        if "stop_sequences" in settings:
            kwargs["stop_sequences"] = settings["stop_sequences"]
        if "timeout" in settings:
            kwargs["timeout"] = settings["timeout"]
        if "user" in settings:
            kwargs["metadata"] = {"user_id": settings["user"]}
        if "service_tier" in settings:
            kwargs["service_tier"] = settings["service_tier"]
        # This SDK version no longer lists sampling parameters; models that accept them still do in the body.
        extra_body = {name: value for name, value in settings.items() if name in ("temperature", "top_p", "top_k")}
        extra_body.update(settings.get("extra_body", {}))
        if extra_body:
            kwargs["extra_body"] = extra_body
        if "extra_headers" in settings:
            kwargs["extra_headers"] = settings["extra_headers"]
        return kwargs

    # --- Messages API → perdure -------------------------------------------------------------------------

    def _parse_message(self, message: Any) -> ModelResponse:
        parts: list[ModelResponsePart] = []
        for block in message.content:
            if block.type == "text":
                parts.append(TextPart(content=block.text))
            elif block.type == "tool_use":
                parts.append(ToolCallPart(tool_name=block.name, args=dict(block.input), tool_call_id=block.id))
            elif block.type == "thinking":
                parts.append(ThinkingPart(content=block.thinking, signature=block.signature, provider_name=PROVIDER))
            elif block.type == "redacted_thinking":
                parts.append(ThinkingPart(signature=block.data, redacted=True, provider_name=PROVIDER))
        return ModelResponse(
            parts=parts,
            usage=_usage(message.usage),
            model_name=message.model or self._model_name,
            finish_reason=message.stop_reason,
        )

    def _http_error(self, e: Any) -> ModelHTTPError:
        return _http_error(e, model_name=self._model_name, base_url=self.base_url)


def _anthropic_messages(messages: list[ModelMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The ``system`` text and the alternating user/assistant messages."""
    system_parts: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for message in messages:
        if isinstance(message, ModelRequest):
            # tool_result blocks must open the user turn that follows the assistant's tool_use blocks.
            results: list[dict[str, Any]] = []
            texts: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    system_parts.append(part.content)
                elif isinstance(part, UserPromptPart):
                    texts += anthropic_user_blocks(part.content)
                elif isinstance(part, ToolReturnPart):
                    results.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": part.tool_call_id,
                            "content": anthropic_tool_result_content(part),
                        }
                    )
                elif isinstance(part, RetryPromptPart):
                    if part.tool_call_id:
                        results.append(
                            {
                                "type": "tool_result",
                                "tool_use_id": part.tool_call_id,
                                "content": part.model_response(),
                                "is_error": True,
                            }
                        )
                    else:
                        texts.append({"type": "text", "text": part.model_response()})
            add("user", results + texts)
        else:
            blocks: list[dict[str, Any]] = []
            for response_part in message.parts:
                if isinstance(response_part, TextPart):
                    if response_part.content:
                        blocks.append({"type": "text", "text": response_part.content})
                elif isinstance(response_part, ThinkingPart):
                    # Thinking goes back unmodified, in its place before the tool_use blocks (the API checks the
                    # signature, and requires the last assistant turn's thinking when thinking is on). Another
                    # provider's reasoning, or reasoning without a signature, cannot be verified: left out.
                    if response_part.provider_name == PROVIDER and response_part.signature:
                        blocks.append(_thinking_block(response_part))
                else:
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": response_part.tool_call_id,
                            "name": response_part.tool_name,
                            "input": _tool_input(response_part),
                        }
                    )
            add("assistant", blocks)
    instructions = _last_instructions(messages)
    system = "\n\n".join([*system_parts, *([instructions] if instructions else [])])
    return system, out


def _thinking_block(part: ThinkingPart) -> dict[str, Any]:
    if part.redacted:
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.content, "signature": part.signature}


def _thinking_config(settings: ModelSettings) -> dict[str, Any] | None:
    """The ``thinking`` parameter for ``thinking_budget``: tokens, 0 (off) or -1 (adaptive: the model decides)."""
    if "thinking_budget" not in settings:
        return None
    budget = settings["thinking_budget"]
    if budget == 0:
        return {"type": "disabled"}
    if budget < 0:
        return {"type": "adaptive"}
    return {"type": "enabled", "budget_tokens": budget}


def _tool_input(call: ToolCallPart) -> dict[str, Any]:
    try:
        return call.args_as_dict()
    except ValueError:
        # Arguments that were not a JSON object; the retry prompt that follows tells the model so.
        return {}


def _tool(tool: ToolDefinition, *, strict: bool) -> dict[str, Any]:
    schema = _strict_schema(tool.parameters_json_schema) if strict else tool.parameters_json_schema
    definition: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        definition["description"] = tool.description
    if strict:
        definition["strict"] = True
    return definition


def _cache_targets(settings: ModelSettings) -> set[str]:
    """Where ``anthropic_cache`` puts cache breakpoints: instructions, tools, messages."""
    value = settings.get("anthropic_cache", False)
    if value is True:
        return {"instructions", "tools", "messages"}
    return set(value) if isinstance(value, list) else set()


def _usage(usage: Any, before: RequestUsage | None = None) -> RequestUsage:
    """perdure's usage from an Anthropic usage object; in a stream, ``before`` holds what earlier events said.

    Anthropic already counts cache reads and writes apart from ``input_tokens``, as perdure does. A stream's
    ``message_delta`` usage is cumulative, and omits (null) what it does not restate: those keep ``before``.
    """
    before = before or RequestUsage()

    def count(name: str, default: int) -> int:
        value = getattr(usage, name, None)
        return value if isinstance(value, int) else default

    details = getattr(usage, "output_tokens_details", None)
    thinking = getattr(details, "thinking_tokens", None) if details is not None else None
    return RequestUsage(
        input_tokens=count("input_tokens", before.input_tokens),
        output_tokens=count("output_tokens", before.output_tokens),
        cache_read_tokens=count("cache_read_input_tokens", before.cache_read_tokens),
        cache_write_tokens=count("cache_creation_input_tokens", before.cache_write_tokens),
        reasoning_tokens=thinking if isinstance(thinking, int) else before.reasoning_tokens,
    )


def _stream_events(raw: Any, streamed: StreamedResponse, block_types: dict[int, str]) -> list[StreamEvent]:
    """perdure events for one raw Messages stream event; the index is Anthropic's content block index.

    ``block_types`` remembers each open block's type by index: a delta names only its index, and an
    ``input_json_delta`` belongs to a function call only inside a ``tool_use`` block (``server_tool_use`` and
    ``mcp_tool_use`` blocks stream their input the same way, for tools the API runs itself).
    """
    kind = raw.type
    if kind == "message_start":
        message = raw.message
        if message.model:
            streamed.model_name = message.model
        streamed.usage = _usage(message.usage)
    elif kind == "content_block_start":
        block = raw.content_block
        block_types[raw.index] = block.type
        if block.type == "text" and block.text:
            return [TextDelta(raw.index, block.text)]
        if block.type == "tool_use":
            return [ToolCallDelta(raw.index, tool_name=block.name, tool_call_id=block.id)]
        if block.type == "thinking":
            # The block opens empty (the documented start has "thinking": "" and no signature yet); its text
            # and signature arrive as deltas.
            text = getattr(block, "thinking", None) or ""
            signature = getattr(block, "signature", None) or None
            return [ThinkingDelta(raw.index, text, signature=signature, provider_name=PROVIDER)]
        if block.type == "redacted_thinking":
            return [ThinkingDelta(raw.index, signature=block.data, redacted=True, provider_name=PROVIDER)]
    elif kind == "content_block_delta":
        delta = raw.delta
        if delta.type == "text_delta":
            return [TextDelta(raw.index, delta.text)]
        if delta.type == "input_json_delta" and block_types.get(raw.index) == "tool_use":
            return [ToolCallDelta(raw.index, args_delta=delta.partial_json)]
        if delta.type == "thinking_delta":
            return [ThinkingDelta(raw.index, delta.thinking, provider_name=PROVIDER)]
        if delta.type == "signature_delta":
            return [ThinkingDelta(raw.index, signature=delta.signature, provider_name=PROVIDER)]
    elif kind == "message_delta":
        if raw.delta.stop_reason:
            streamed.finish_reason = raw.delta.stop_reason
        streamed.usage = _usage(raw.usage, streamed.usage)
    return []


def _http_error(e: Any, *, model_name: str, base_url: str) -> ModelHTTPError:
    """An SDK error as perdure's ``ModelHTTPError``, with the provider's own message."""
    where = f"anthropic model {model_name!r}"
    if isinstance(e, anthropic.APIStatusError):
        message = _provider_message(e.body) or e.message
        status: int | None = int(e.status_code)
        if status is not None and status < 400:
            # An error event inside a stream that had started with 200: its type says what happened.
            status = _ERROR_TYPE_STATUS.get(_provider_error_type(e.body) or "")
            return ModelHTTPError(
                f"{where} failed while streaming: {message}",
                status_code=status,
                model_name=model_name,
                transient=http_error_is_transient(status),
            )
        return ModelHTTPError(
            f"{where} failed with HTTP {status}: {message}",
            status_code=status,
            model_name=model_name,
            transient=http_error_is_transient(status),
            retry_after=_retry_after(e.response.headers),
        )
    if isinstance(e, anthropic.APIConnectionError):  # includes APITimeoutError
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        return ModelHTTPError(
            f"{where}: could not get an answer from {base_url}: {e.message}{cause}",
            model_name=model_name,
            transient=True,
        )
    if isinstance(e, anthropic.APIResponseValidationError):
        return ModelHTTPError(
            f"{where} answered with data the SDK could not read: {e.message}",
            status_code=int(e.status_code),
            model_name=model_name,
        )
    return ModelHTTPError(f"{where} failed: {_provider_message(e.body) or e.message}", model_name=model_name)


def _sdk_demands_streaming(e: ValueError) -> bool:
    # "Streaming is required for operations that may take longer than 10 minutes" (older SDKs: "Streaming is
    # strongly recommended ..."): the SDK's own check of max_tokens against its non-streaming time limit.
    return str(e).startswith("Streaming is")


def _provider_error_type(body: object) -> str | None:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("type"):
            return str(error["type"])
    return None
