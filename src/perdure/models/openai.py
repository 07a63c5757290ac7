"""OpenAI Chat Completions models; OpenAI-compatible servers (Ollama, vLLM, LM Studio) through ``base_url``.

Needs the ``openai`` extra (``pip install "perdure[openai]"``)::

    from perdure.models.openai import OpenAIModel

    model = OpenAIModel("gpt-4.1-mini")  # key from OPENAI_API_KEY
    local = OpenAIModel("llama3.2", base_url="http://localhost:11434/v1")  # no key needed

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

from .._exceptions import MissingExtra, ModelHTTPError, UnexpectedModelBehavior, UserError
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
from ._multimodal import chat_tool_return, chat_user_content

try:
    import openai
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("openai", "openai") from e

__all__ = ["OpenAIModel"]

_PLACEHOLDER_KEY = "not-needed"


class OpenAIModel(Model):
    """A model served by the OpenAI Chat Completions API or a server that speaks it.

    ``api_key`` defaults to the ``OPENAI_API_KEY`` environment variable; with ``base_url`` and no key, a
    placeholder key is sent (local servers ignore it). Pass ``client`` to use your own ``openai.AsyncOpenAI``
    (it stays yours to close). ``provider_name`` is what observability reports as the GenAI system.

    Reasoning that compatible servers return beside the answer (``reasoning_content``: DeepSeek, vLLM, LM
    Studio; ``reasoning``: OpenRouter, Ollama) is kept in the history as a ``ThinkingPart``. It is not sent back
    unless ``send_reasoning=True``, which puts it in the assistant message's ``reasoning_content`` (DeepSeek's
    thinking mode asks for it during tool calls; other servers reject or ignore it).

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
        provider_name: str = "openai",
        send_reasoning: bool = False,
    ) -> None:
        self._model_name = model_name
        self._provider_name = provider_name
        self._send_reasoning = send_reasoning
        self._base_url = base_url
        self._api_key: str | None = None
        self._fixed_client: Any = None
        if client is not None:
            if not isinstance(client, openai.AsyncOpenAI):
                raise UserError(f"OpenAIModel(client=...) needs an openai.AsyncOpenAI, not {type(client).__name__}")
            self._fixed_client = client.with_options(max_retries=0)
        else:
            key = api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                if base_url is None:
                    raise UserError(
                        f"OpenAIModel({model_name!r}) needs an API key: set the OPENAI_API_KEY environment "
                        "variable or pass api_key=..."
                    )
                key = _PLACEHOLDER_KEY
            self._api_key = key
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = weakref.WeakKeyDictionary()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def system(self) -> str:
        return self._provider_name

    @property
    def base_url(self) -> str:
        """Where requests go."""
        if self._fixed_client is not None:
            return str(self._fixed_client.base_url)
        return self._base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def __repr__(self) -> str:
        return f"OpenAIModel({self._model_name!r}, base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the SDK client opened for the running event loop; a ``client`` you passed is left open."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.guard.aclose()

    async def __aenter__(self) -> OpenAIModel:
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
        kwargs = self._completion_kwargs(messages, settings, params)
        try:
            completion = await client.chat.completions.create(**kwargs)
        except openai.APIError as e:
            raise self._http_error(e) from e
        return self._parse_completion(completion)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        client = await self._client()
        kwargs = self._completion_kwargs(messages, settings, params)
        try:
            chunks = await client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        except openai.APIError as e:
            raise self._http_error(e) from e
        async with chunks:

            async def events() -> AsyncGenerator[StreamEvent, None]:
                try:
                    async for chunk in chunks:
                        for event in _chunk_events(chunk, streamed, self._provider_name):
                            yield event
                except openai.APIError as e:
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
            options: dict[str, Any] = {"api_key": self._api_key, "max_retries": 0}
            if self._base_url is not None:
                options["base_url"] = self._base_url
            entry = await _LoopClient.open(openai.AsyncOpenAI(**options))
            self._clients[loop] = entry
        return entry.client

    # --- perdure → Chat Completions ---------------------------------------------------------------------

    def _completion_kwargs(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> dict[str, Any]:
        settings = settings or {}
        kwargs: dict[str, Any] = {
            "model": self._model_name,
            "messages": _chat_messages(messages, self._provider_name if self._send_reasoning else None),
        }
        tools = [_function_tool(tool, strict=settings.get("strict_tools", False)) for tool in params.tools]
        if tools:
            kwargs["tools"] = tools
            if not params.allow_text_output and params.native_output is None:
                kwargs["tool_choice"] = "required"
            if "parallel_tool_calls" in settings:
                kwargs["parallel_tool_calls"] = settings["parallel_tool_calls"]
        if params.native_output is not None:
            kwargs["response_format"] = _response_format(
                params.native_output, strict=settings.get("strict_output", False)
            )
        if "max_tokens" in settings:
            # OpenAI's own API wants max_completion_tokens (reasoning models reject max_tokens); the
            # compatible servers reached through base_url all understand max_tokens.
            key = "max_tokens" if self._base_url is not None else "max_completion_tokens"
            kwargs[key] = settings["max_tokens"]
        for name, value in settings.items():
            if name in ("temperature", "top_p", "seed", "timeout"):
                kwargs[name] = value
        if "stop_sequences" in settings:
            kwargs["stop"] = settings["stop_sequences"]
        for name in ("reasoning_effort", "user", "service_tier", "prompt_cache_key"):
            if name in settings:
                kwargs[name] = settings[name]  # type: ignore[literal-required]
        extra_body: dict[str, Any] = {}
        if "top_k" in settings and self._base_url is not None:
            # Compatible servers (vLLM, Ollama, LM Studio, OpenRouter) take top_k; OpenAI's own API has none.
            extra_body["top_k"] = settings["top_k"]
        extra_body.update(settings.get("extra_body", {}))
        if extra_body:
            kwargs["extra_body"] = extra_body
        if "extra_headers" in settings:
            kwargs["extra_headers"] = settings["extra_headers"]
        return kwargs

    # --- Chat Completions → perdure ---------------------------------------------------------------------

    def _parse_completion(self, completion: Any) -> ModelResponse:
        if not completion.choices:
            raise UnexpectedModelBehavior(
                f"{self._provider_name} model {self._model_name!r} returned no choices", body=str(completion)
            )
        choice = completion.choices[0]
        message = choice.message
        parts: list[ModelResponsePart] = []
        reasoning = _reasoning_text(message)
        if reasoning:
            parts.append(ThinkingPart(content=reasoning, provider_name=self._provider_name))
        if message.content:
            parts.append(TextPart(content=message.content))
        for call in message.tool_calls or ():
            if getattr(call, "type", "function") == "function":
                parts.append(
                    ToolCallPart(tool_name=call.function.name, args=call.function.arguments, tool_call_id=call.id)
                )
        if not parts and message.refusal:
            parts.append(TextPart(content=message.refusal))
        return ModelResponse(
            parts=parts,
            usage=_usage(completion.usage),
            model_name=completion.model or self._model_name,
            finish_reason=choice.finish_reason,
        )

    def _http_error(self, e: Any) -> ModelHTTPError:
        return _http_error(e, provider=self._provider_name, model_name=self._model_name, base_url=self.base_url)


def _chat_messages(messages: list[ModelMessage], send_reasoning_of: str | None = None) -> list[dict[str, Any]]:
    """Chat messages; with ``send_reasoning_of``, that provider's reasoning goes back as ``reasoning_content``."""
    out: list[dict[str, Any]] = []
    instructions = _last_instructions(messages)
    if instructions:
        out.append({"role": "system", "content": instructions})
    for message in messages:
        if isinstance(message, ModelRequest):
            # Tool results must directly follow the assistant message that called the tools.
            tool_results: list[dict[str, Any]] = []
            tool_files: list[dict[str, Any]] = []  # tool messages take only text: files follow as a user turn
            others: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    others.append({"role": "system", "content": part.content})
                elif isinstance(part, UserPromptPart):
                    others.append({"role": "user", "content": chat_user_content(part.content)})
                elif isinstance(part, ToolReturnPart):
                    text, files = chat_tool_return(part)
                    tool_results.append({"role": "tool", "tool_call_id": part.tool_call_id, "content": text})
                    tool_files += files
                elif isinstance(part, RetryPromptPart):
                    if part.tool_call_id:
                        tool_results.append(
                            {
                                "role": "tool",
                                "tool_call_id": part.tool_call_id,
                                "content": part.model_response(),
                            }
                        )
                    else:
                        others.append({"role": "user", "content": part.model_response()})
            if tool_files:
                others.insert(0, {"role": "user", "content": tool_files})
            out += tool_results + others
        else:
            texts = [p.content for p in message.parts if isinstance(p, TextPart)]
            calls = [
                {
                    "id": p.tool_call_id,
                    "type": "function",
                    "function": {"name": p.tool_name, "arguments": p.args_as_json_str()},
                }
                for p in message.parts
                if isinstance(p, ToolCallPart)
            ]
            assistant: dict[str, Any] = {
                "role": "assistant",
                "content": "\n\n".join(texts) if texts else None,
            }
            if calls:
                assistant["tool_calls"] = calls
            elif not texts:
                assistant["content"] = ""
            if send_reasoning_of is not None:
                reasoning = [
                    p.content
                    for p in message.parts
                    if isinstance(p, ThinkingPart) and p.content and p.provider_name == send_reasoning_of
                ]
                if reasoning:
                    assistant["reasoning_content"] = "\n\n".join(reasoning)
            out.append(assistant)
    return out


def _function_tool(tool: ToolDefinition, *, strict: bool) -> dict[str, Any]:
    parameters = _strict_schema(tool.parameters_json_schema) if strict else tool.parameters_json_schema
    function: dict[str, Any] = {"name": tool.name, "parameters": parameters}
    if tool.description:
        function["description"] = tool.description
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _response_format(output: ToolDefinition, *, strict: bool) -> dict[str, Any]:
    parameters = _strict_schema(output.parameters_json_schema) if strict else output.parameters_json_schema
    schema: dict[str, Any] = {"name": output.name, "schema": parameters}
    if output.description:
        schema["description"] = output.description
    if strict:
        schema["strict"] = True
    return {"type": "json_schema", "json_schema": schema}


def _reasoning_text(message: Any) -> str | None:
    """The reasoning a compatible server sent beside the content (the SDK keeps such unknown fields)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def _chunk_events(chunk: Any, streamed: StreamedResponse, provider_name: str) -> list[StreamEvent]:
    """The events in one streamed chunk; reasoning is index -1 (it precedes the answer), text is index 0, the
    i-th tool call index 1 + i."""
    if chunk.model:
        streamed.model_name = chunk.model
    if chunk.usage is not None:
        streamed.usage = _usage(chunk.usage)
    events: list[StreamEvent] = []
    for choice in chunk.choices:
        if choice.index != 0:
            continue
        delta = choice.delta
        reasoning = _reasoning_text(delta)
        if reasoning:
            events.append(ThinkingDelta(-1, reasoning, provider_name=provider_name))
        if delta.content:
            events.append(TextDelta(0, delta.content))
        for call in delta.tool_calls or ():
            function = call.function
            events.append(
                ToolCallDelta(
                    1 + call.index,
                    tool_name=function.name if function is not None else None,
                    args_delta=(function.arguments or "") if function is not None else "",
                    tool_call_id=call.id,
                )
            )
        if choice.finish_reason:
            streamed.finish_reason = choice.finish_reason
    return events


def _usage(usage: Any) -> RequestUsage:
    """perdure's usage from Chat Completions': cached prompt tokens are counted apart from the full-rate ones."""
    if usage is None:
        return RequestUsage()
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    cached = (getattr(prompt_details, "cached_tokens", None) or 0) if prompt_details is not None else 0
    reasoning = (getattr(completion_details, "reasoning_tokens", None) or 0) if completion_details is not None else 0
    return RequestUsage(
        input_tokens=max(0, (usage.prompt_tokens or 0) - cached),
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _http_error(e: Any, *, provider: str, model_name: str, base_url: str) -> ModelHTTPError:
    """An SDK error as perdure's ``ModelHTTPError``, with the provider's own message."""
    where = f"{provider} model {model_name!r}"
    if isinstance(e, openai.APIStatusError):
        status = int(e.status_code)
        return ModelHTTPError(
            f"{where} failed with HTTP {status}: {_provider_message(e.body) or e.message}",
            status_code=status,
            model_name=model_name,
            transient=http_error_is_transient(status),
            retry_after=_retry_after(e.response.headers),
        )
    if isinstance(e, openai.APIConnectionError):  # includes APITimeoutError
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        return ModelHTTPError(
            f"{where}: could not get an answer from {base_url}: {e.message}{cause}",
            model_name=model_name,
            transient=True,
        )
    if isinstance(e, openai.APIResponseValidationError):
        return ModelHTTPError(
            f"{where} answered with data the SDK could not read: {e.message}",
            status_code=int(e.status_code),
            model_name=model_name,
        )
    # An error object the server sent inside a stream that had started with 200 (OpenRouter, vLLM and other
    # compatible servers do this; the SDK hands over the object as ``body``). Its code says what happened: a 4xx
    # code is the request's fault and terminal, as the same 400 before streaming would be; a 5xx code, or none,
    # is a failure on the provider's side, worth retrying.
    stream_status = _stream_error_status(e.body)
    return ModelHTTPError(
        f"{where} failed while streaming: {_provider_message(e.body) or e.message}",
        status_code=stream_status,
        model_name=model_name,
        transient=http_error_is_transient(stream_status),
    )


# Error codes and types that compatible servers put in a stream's error object instead of an HTTP status.
_ERROR_NAME_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "overloaded_error": 529,
}


def _stream_error_status(body: object) -> int | None:
    """The HTTP status an in-stream error object stands for: its numeric ``code``, else a known code or type."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    code = error.get("code")
    if isinstance(code, int | str) and not isinstance(code, bool) and str(code).isdigit():
        status = int(code)
        return status if 400 <= status <= 599 else None
    for name in (code, error.get("type")):
        if isinstance(name, str) and name in _ERROR_NAME_STATUS:
            return _ERROR_NAME_STATUS[name]
    return None
