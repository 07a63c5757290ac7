"""Google Gemini models through the official ``google-genai`` SDK (the Gemini Developer API, or Vertex AI).

Needs the ``google`` extra (``pip install "perdure[google]"``)::

    from perdure.models.google import GoogleModel

    model = GoogleModel("gemini-2.5-flash")  # key from GOOGLE_API_KEY (or GEMINI_API_KEY)

The SDK's own retries stay off (its default): perdure retries transient errors itself, with bounded backoff, so
that a durable run records one model step however many attempts it took. SDK errors are mapped here to
``ModelHTTPError``, whose ``transient`` flag says whether retrying can help.

Gemini's thought signatures (opaque bytes the API attaches to a part when the model thought before it) are kept
in the history as a ``ThinkingPart`` placed before the part that carried them, and handed back on that part in
the next request, as the API requires for thinking with function calls.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import re
import uuid
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
from ._http import retry_after as _retry_after
from ._multimodal import gemini_tool_return, gemini_user_parts

try:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("google-genai", "google") from e


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures and timeouts, which the SDK lets through from its HTTP client (httpx2, or httpx)."""
    found: list[type[Exception]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
_SDK_ERRORS: tuple[type[Exception], ...] = (
    genai_errors.APIError,
    genai_errors.UnknownApiResponseError,
    *_TRANSPORT_ERRORS,
)

__all__ = ["GoogleModel"]

PROVIDER = "google"
"""The ``provider_name`` of thinking parts this module writes: their signatures only mean something to Gemini."""

_GENERATED_ID = "pdcall_"
"""Prefix of tool call ids perdure made up because the API sent none (these are not sent back)."""


class GoogleModel(Model):
    """A Gemini model through the ``google-genai`` SDK.

    ``api_key`` defaults to the ``GOOGLE_API_KEY`` environment variable, then ``GEMINI_API_KEY``. ``base_url``
    sends requests elsewhere (a proxy, a test server); ``GOOGLE_GEMINI_BASE_URL`` works too. Pass ``client``
    to use your own ``google.genai.Client`` (for Vertex AI: ``genai.Client(vertexai=True, project=...,
    location=...)``); it stays yours to close.

    ``thinking_budget`` (tokens; 0 turns thinking off on models that allow it, -1 lets the model decide) and
    ``include_thoughts`` (thought summaries in the response) configure Gemini's thinking; ``ModelSettings`` keys
    of the same names override them per run.

    Without ``client``, the model opens one SDK client per event loop and closes it when that loop shuts down,
    so a model can serve many ``asyncio.run`` calls; ``await model.close()`` closes the current loop's client.
    """

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: Any = None,
        thinking_budget: int | None = None,
        include_thoughts: bool | None = None,
    ) -> None:
        self._model_name = model_name
        self._base_url = base_url
        self._api_key: str | None = None
        self._fixed_client: Any = None
        self._thinking_budget = thinking_budget
        self._include_thoughts = include_thoughts
        if client is not None:
            if not isinstance(client, genai.Client):
                raise UserError(f"GoogleModel(client=...) needs a google.genai.Client, not {type(client).__name__}")
            self._fixed_client = client
        else:
            key = api_key or os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")
            if not key:
                raise UserError(
                    f"GoogleModel({model_name!r}) needs an API key: set the GOOGLE_API_KEY (or GEMINI_API_KEY) "
                    "environment variable, pass api_key=..., or pass client=genai.Client(vertexai=True, ...)"
                )
            self._api_key = key
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = weakref.WeakKeyDictionary()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def system(self) -> str:
        return "gcp.vertex_ai" if self._fixed_client is not None and self._fixed_client.vertexai else "gcp.gemini"

    @property
    def base_url(self) -> str:
        """Where requests go."""
        if self._fixed_client is not None:
            # The SDK has no public accessor; this is for messages and repr only, so fall back quietly.
            options = getattr(getattr(self._fixed_client, "_api_client", None), "_http_options", None)
            return str(getattr(options, "base_url", None) or "(the client's endpoint)")
        return (
            self._base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or "https://generativelanguage.googleapis.com/"
        )

    def __repr__(self) -> str:
        return f"GoogleModel({self._model_name!r}, base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the SDK client opened for the running event loop; a ``client`` you passed is left open."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.guard.aclose()

    async def __aenter__(self) -> GoogleModel:
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
        contents, config = self._request_parts(messages, settings, params)
        try:
            response = await client.aio.models.generate_content(
                model=self._model_name, contents=contents, config=config
            )
        except _SDK_ERRORS as e:
            raise self._http_error(e) from e
        return self._parse_response(response)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        client = await self._client()
        contents, config = self._request_parts(messages, settings, params)
        try:
            chunks = await client.aio.models.generate_content_stream(
                model=self._model_name, contents=contents, config=config
            )
        except _SDK_ERRORS as e:
            raise self._http_error(e) from e
        state = _StreamState()

        async def events() -> AsyncGenerator[StreamEvent, None]:
            try:
                async for chunk in chunks:
                    for event in state.events(chunk, streamed):
                        yield event
            except _SDK_ERRORS as e:
                raise self._http_error(e) from e
            finally:
                await chunks.aclose()

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
            options: dict[str, Any] = {}
            if self._base_url is not None:
                options["base_url"] = self._base_url
            client = genai.Client(api_key=self._api_key, http_options=genai_types.HttpOptions(**options))
            entry = await _LoopClient.open(_Closing(client))
            self._clients[loop] = entry
        return entry.client.client

    # --- perdure → Gemini -------------------------------------------------------------------------------

    def _request_parts(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        settings = settings or {}
        system, contents = _gemini_contents(messages)
        config: dict[str, Any] = {
            # Tools are declarations here, never Python callables, but say so: the SDK must not call anything.
            "automatic_function_calling": {"disable": True},
        }
        if system:
            config["system_instruction"] = system
        declarations = [_function_declaration(tool) for tool in params.tools]
        if declarations:
            config["tools"] = [{"function_declarations": declarations}]
            if not params.allow_text_output and params.native_output is None:
                config["tool_config"] = {"function_calling_config": {"mode": "ANY"}}
        if params.native_output is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = params.native_output.parameters_json_schema
        if "max_tokens" in settings:
            config["max_output_tokens"] = settings["max_tokens"]
        for name in ("temperature", "top_p", "top_k", "seed", "stop_sequences"):
            if name in settings:
                config[name] = settings[name]  # type: ignore[literal-required]
        http_options: dict[str, Any] = {}
        if "timeout" in settings:
            http_options["timeout"] = int(settings["timeout"] * 1000)  # the SDK counts milliseconds
        if "extra_headers" in settings:
            http_options["headers"] = settings["extra_headers"]
        if "extra_body" in settings:
            http_options["extra_body"] = settings["extra_body"]
        if http_options:
            config["http_options"] = http_options
        thinking: dict[str, Any] = {}
        budget = settings.get("thinking_budget", self._thinking_budget)
        if budget is not None:
            thinking["thinking_budget"] = budget
        include = settings.get("include_thoughts", self._include_thoughts)
        if include is not None:
            thinking["include_thoughts"] = include
        if thinking:
            config["thinking_config"] = thinking
        return contents, config

    # --- Gemini → perdure -------------------------------------------------------------------------------

    def _parse_response(self, response: Any) -> ModelResponse:
        if not response.candidates:
            feedback = response.prompt_feedback
            reason = getattr(feedback, "block_reason", None) if feedback is not None else None
            raise UnexpectedModelBehavior(
                f"gemini model {self._model_name!r} returned no candidates"
                + (f" (the prompt was blocked: {_enum_value(reason)})" if reason else ""),
                body=response.model_dump_json(exclude_none=True),
            )
        candidate = response.candidates[0]
        parts: list[ModelResponsePart] = []
        for part in _candidate_parts(candidate):
            for converted in _response_parts(part):
                _append_merged(parts, converted)
        return ModelResponse(
            parts=parts,
            usage=_usage(response.usage_metadata),
            model_name=response.model_version or self._model_name,
            finish_reason=_enum_value(candidate.finish_reason),
        )

    def _http_error(self, e: Exception) -> ModelHTTPError:
        where = f"gemini model {self._model_name!r}"
        if isinstance(e, genai_errors.APIError):
            status = e.code if isinstance(e.code, int) else None
            message = e.message or str(e)
            response = getattr(e, "response", None)
            headers = getattr(response, "headers", None)
            wait = _retry_after(headers) if headers is not None else None
            if wait is None:
                wait = _retry_delay(e.details)
            return ModelHTTPError(
                f"{where} failed with HTTP {status}: {message}",
                status_code=status,
                model_name=self._model_name,
                transient=http_error_is_transient(status),
                retry_after=wait,
            )
        if isinstance(e, _TRANSPORT_ERRORS):  # connection refused, timeouts, a dropped stream
            return ModelHTTPError(
                f"{where}: could not get an answer from {self.base_url}: {type(e).__name__}: {e}",
                model_name=self._model_name,
                transient=True,
            )
        return ModelHTTPError(f"{where} answered with data the SDK could not read: {e}", model_name=self._model_name)


class _Closing:
    """Gives a ``genai.Client`` the ``async close()`` that ``LoopClient`` calls."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def close(self) -> None:
        await self.client.aio.aclose()
        self.client.close()


def _gemini_contents(messages: list[ModelMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The system instruction and the ``contents`` (``user`` and ``model`` turns, merged when adjacent)."""
    system_parts: list[str] = []
    contents: list[dict[str, Any]] = []

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in messages:
        if isinstance(message, ModelRequest):
            # Function responses first: they answer the model turn just before, in the order it called them.
            responses: list[dict[str, Any]] = []
            others: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    system_parts.append(part.content)
                elif isinstance(part, UserPromptPart):
                    others.extend(gemini_user_parts(part.content))
                elif isinstance(part, ToolReturnPart):
                    response, extra = gemini_tool_return(part)
                    responses.append(_function_response(part.tool_name, part.tool_call_id, response))
                    others.extend(extra)
                elif isinstance(part, RetryPromptPart):
                    if part.tool_call_id and part.tool_name:
                        responses.append(
                            _function_response(part.tool_name, part.tool_call_id, {"error": part.model_response()})
                        )
                    else:
                        others.append({"text": part.model_response()})
            add("user", responses + others)
        else:
            add("model", _model_parts(message.parts))
    instructions = _last_instructions(messages)
    return "\n\n".join([*system_parts, *([instructions] if instructions else [])]), contents


def _function_response(name: str, tool_call_id: str, response: dict[str, Any]) -> dict[str, Any]:
    function_response: dict[str, Any] = {"name": name, "response": response}
    if tool_call_id and not tool_call_id.startswith(_GENERATED_ID):
        function_response["id"] = tool_call_id
    return {"function_response": function_response}


def _model_parts(parts: list[ModelResponsePart]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    signature: bytes | None = None  # from a signature-only thinking part, for the part that follows it
    for part in parts:
        if isinstance(part, ThinkingPart):
            if part.provider_name != PROVIDER:
                continue  # another provider's thinking: Gemini can neither read nor verify it
            own = _signature_bytes(part.signature)
            if part.content:
                out.append(_signed({"text": part.content, "thought": True}, own))
            else:
                signature = own
            continue
        if isinstance(part, TextPart):
            if not part.content and signature is None:
                continue
            gemini: dict[str, Any] = {"text": part.content}
        elif isinstance(part, ToolCallPart):
            call: dict[str, Any] = {"name": part.tool_name, "args": _tool_args(part)}
            if part.tool_call_id and not part.tool_call_id.startswith(_GENERATED_ID):
                call["id"] = part.tool_call_id
            gemini = {"function_call": call}
        else:
            continue
        out.append(_signed(gemini, signature))
        signature = None
    if signature is not None:  # a signature the model sent on an empty closing part
        out.append(_signed({"text": ""}, signature))
    return out


def _signed(part: dict[str, Any], signature: bytes | None) -> dict[str, Any]:
    if signature is not None:
        part["thought_signature"] = signature
    return part


def _signature_bytes(signature: str | None) -> bytes | None:
    return base64.b64decode(signature) if signature else None


def _tool_args(call: ToolCallPart) -> dict[str, Any]:
    try:
        return call.args_as_dict()
    except ValueError:
        return {}  # arguments that were not a JSON object; the retry prompt that follows says so


def _function_declaration(tool: ToolDefinition) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name, "parameters_json_schema": tool.parameters_json_schema}
    if tool.description:
        declaration["description"] = tool.description
    return declaration


def _append_merged(parts: list[ModelResponsePart], part: ModelResponsePart) -> None:
    """Adjacent text (or unsigned thought) parts become one part, as they do when streamed."""
    last = parts[-1] if parts else None
    same_text = isinstance(part, TextPart) and isinstance(last, TextPart)
    same_thought = (
        isinstance(part, ThinkingPart)
        and isinstance(last, ThinkingPart)
        and bool(part.content and last.content)
        and not (part.signature or last.signature)
    )
    if (same_text or same_thought) and isinstance(last, TextPart | ThinkingPart) and not isinstance(part, ToolCallPart):
        last.content += part.content
    else:
        parts.append(part)


def _candidate_parts(candidate: Any) -> list[Any]:
    """A candidate's parts; a candidate stopped by a safety filter may have no content at all."""
    content = candidate.content
    return list(content.parts or ()) if content is not None else []


def _response_parts(part: Any) -> list[ModelResponsePart]:
    """One Gemini part as perdure parts: a signature becomes a thinking part in front of what carried it."""
    out: list[ModelResponsePart] = []
    signature = base64.b64encode(part.thought_signature).decode() if part.thought_signature else None
    if part.thought and part.text is not None:
        return [ThinkingPart(content=part.text, signature=signature, provider_name=PROVIDER)]
    if signature is not None:
        out.append(ThinkingPart(content="", signature=signature, provider_name=PROVIDER))
    if part.function_call is not None:
        call = part.function_call
        out.append(
            ToolCallPart(
                tool_name=call.name or "",
                args=dict(call.args or {}),
                tool_call_id=call.id or f"{_GENERATED_ID}{uuid.uuid4().hex[:16]}",
            )
        )
    elif part.text:
        out.append(TextPart(content=part.text))
    return out


def _usage(metadata: Any) -> RequestUsage:
    if metadata is None:
        return RequestUsage()
    cached = metadata.cached_content_token_count or 0
    # Gemini counts thinking apart from the answer; both are billed as output.
    thoughts = metadata.thoughts_token_count or 0
    return RequestUsage(
        input_tokens=max(0, (metadata.prompt_token_count or 0) - cached),  # the prompt count includes the cache
        output_tokens=(metadata.candidates_token_count or 0) + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _retry_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "17s"``), which Gemini sends with 429s."""
    error = details.get("error") if isinstance(details, Mapping) else None
    for detail in (error.get("details") if isinstance(error, Mapping) else None) or ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"([0-9.]+)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class _StreamState:
    """Turns streamed chunks into events. Each Gemini part is whole; text and thoughts continue across chunks."""

    def __init__(self) -> None:
        self.next_index = 0
        self.open_kind: str | None = None  # "text" or "thinking": the part that streamed text extends

    def events(self, chunk: Any, streamed: StreamedResponse) -> list[StreamEvent]:
        if chunk.model_version:
            streamed.model_name = chunk.model_version
        if chunk.usage_metadata is not None:
            streamed.usage = _usage(chunk.usage_metadata)
        out: list[StreamEvent] = []
        if not chunk.candidates:
            return out
        candidate = chunk.candidates[0]
        if candidate.finish_reason is not None:
            streamed.finish_reason = _enum_value(candidate.finish_reason)
        for part in _candidate_parts(candidate):
            for converted in _response_parts(part):
                out.extend(self._events(converted))
        return out

    def _events(self, part: ModelResponsePart) -> list[StreamEvent]:
        if isinstance(part, TextPart) or (isinstance(part, ThinkingPart) and part.content and not part.signature):
            kind = "text" if isinstance(part, TextPart) else "thinking"
            if self.open_kind != kind:
                self.open_kind = kind
                self.next_index += 1
            index = self.next_index - 1
            if isinstance(part, TextPart):
                return [TextDelta(index, part.content)]
            return [ThinkingDelta(index, part.content, provider_name=PROVIDER)]
        self.open_kind = None
        index = self.next_index
        self.next_index += 1
        if isinstance(part, ThinkingPart):
            return [ThinkingDelta(index, part.content, signature=part.signature, provider_name=PROVIDER)]
        if isinstance(part, ToolCallPart):
            return [ToolCallDelta(index, part.tool_name, part.args_as_json_str(), part.tool_call_id)]
        return []
