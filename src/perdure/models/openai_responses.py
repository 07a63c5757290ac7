"""OpenAI models through the Responses API (``POST /v1/responses``), besides Chat Completions.

Needs the ``openai`` extra (``pip install "perdure[openai]"``)::

    from perdure.models.openai_responses import OpenAIResponsesModel

    model = OpenAIResponsesModel("gpt-4.1")  # key from OPENAI_API_KEY; or the model string "openai-responses:gpt-4.1"

Each reasoning item the model returns is kept in the history as a ``ThinkingPart`` (``id`` the item's id,
``content`` its summary, ``signature`` its encrypted content when asked for) and sent back as a reasoning item,
so a reasoning model keeps its reasoning across tool calls, across turns, and across a crash and resume. The
API pairs a reasoning item with the item that followed it by id; that id is kept in the thinking part's
``provider_data`` and restored on the following item.

Nothing is chained by ``previous_response_id``: every request carries the conversation, so a resumed run
needs nothing the provider may have dropped. With ``store=False`` (zero data retention), reasoning comes
back encrypted and is sent back the same way; ``encrypted_reasoning=True`` asks for that while storing too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from .._exceptions import MissingExtra, ModelHTTPError, UnexpectedModelBehavior
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
from ._http import last_instructions as _last_instructions
from ._http import provider_message as _provider_message
from ._http import retry_after as _retry_after
from ._http import strict_schema as _strict_schema
from ._multimodal import responses_tool_output, responses_user_content

try:
    import openai

    from .openai import OpenAIModel
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("openai", "openai") from e

__all__ = ["OpenAIResponsesModel"]

PROVIDER = "openai"
"""The ``provider_name`` of the thinking parts written here."""

# Error codes (in a failed response or a stream's error event) worth retrying; everything else is terminal.
_TRANSIENT_CODES = {"server_error", "rate_limit_exceeded", "internal_error", "timeout", "overloaded"}


class OpenAIResponsesModel(OpenAIModel):
    """A model served by the OpenAI Responses API.

    Takes ``OpenAIModel``'s options (``base_url``, ``api_key``, ``client``, ``provider_name``) and:

    - ``reasoning_summary``: ``"auto"``, ``"concise"`` or ``"detailed"`` asks reasoning models for a readable
      summary of their reasoning (the thinking parts' ``content``);
    - ``store``: whether OpenAI keeps the responses (the API's default is to keep them); ``False`` for zero
      data retention;
    - ``encrypted_reasoning``: ask for reasoning items' encrypted content (always done when ``store=False``),
      so the history carries the reasoning itself rather than a reference to OpenAI's stored copy.

    ``ModelSettings``'s ``reasoning_effort`` sets the reasoning effort.
    """

    def __init__(
        self,
        model_name: str,
        *,
        reasoning_summary: Literal["auto", "concise", "detailed"] | None = None,
        store: bool | None = None,
        encrypted_reasoning: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(model_name, **options)
        self._reasoning_summary = reasoning_summary
        self._store = store
        self._encrypted_reasoning = encrypted_reasoning or store is False

    def __repr__(self) -> str:
        return f"OpenAIResponsesModel({self.model_name!r}, base_url={self.base_url!r})"

    async def request(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> ModelResponse:
        client = await self._client()
        kwargs = self._responses_kwargs(messages, settings, params)
        try:
            response = await client.responses.create(**kwargs)
        except openai.APIError as e:
            raise self._responses_error(e) from e
        return self._parse_response(response)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        settings: ModelSettings | None,
        params: ModelRequestParameters,
    ) -> AsyncIterator[StreamedResponse]:
        client = await self._client()
        kwargs = self._responses_kwargs(messages, settings, params)
        try:
            raw_events = await client.responses.create(**kwargs, stream=True)
        except openai.APIError as e:
            raise self._responses_error(e) from e
        async with raw_events:
            state = _StreamState()

            async def events() -> AsyncGenerator[StreamEvent, None]:
                try:
                    async for raw in raw_events:
                        failure = state.failure(raw)
                        if failure is not None:
                            raise self._failed(*failure)
                        for event in state.events(raw, streamed):
                            yield event
                except openai.APIError as e:
                    raise self._responses_error(e) from e

            event_iterator = events()
            streamed = StreamedResponse(event_iterator, model_name=self.model_name)
            try:
                yield streamed
            finally:
                await event_iterator.aclose()

    # --- perdure → Responses ----------------------------------------------------------------------------

    def _responses_kwargs(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> dict[str, Any]:
        settings = settings or {}
        kwargs: dict[str, Any] = {"model": self.model_name, "input": _input_items(messages)}
        instructions = _last_instructions(messages)
        if instructions:
            kwargs["instructions"] = instructions
        tools = [_function_tool(tool, strict=settings.get("strict_tools")) for tool in params.tools]
        if tools:
            kwargs["tools"] = tools
            if not params.allow_text_output and params.native_output is None:
                kwargs["tool_choice"] = "required"
            if "parallel_tool_calls" in settings:
                kwargs["parallel_tool_calls"] = settings["parallel_tool_calls"]
        if params.native_output is not None:
            kwargs["text"] = {"format": _text_format(params.native_output, strict=settings.get("strict_output"))}
        reasoning: dict[str, Any] = {}
        if "reasoning_effort" in settings:
            reasoning["effort"] = settings["reasoning_effort"]
        if self._reasoning_summary is not None:
            reasoning["summary"] = self._reasoning_summary
        if reasoning:
            kwargs["reasoning"] = reasoning
        if self._encrypted_reasoning:
            kwargs["include"] = ["reasoning.encrypted_content"]
        if self._store is not None:
            kwargs["store"] = self._store
        if "max_tokens" in settings:
            kwargs["max_output_tokens"] = settings["max_tokens"]
        for name in (
            "temperature",
            "top_p",
            "timeout",
            "user",
            "service_tier",
            "prompt_cache_key",
            "extra_headers",
            "extra_body",
        ):
            if name in settings:
                kwargs[name] = settings[name]  # type: ignore[literal-required]
        return kwargs

    # --- Responses → perdure ----------------------------------------------------------------------------

    def _parse_response(self, response: Any) -> ModelResponse:
        if response.status == "failed" or response.error is not None:
            error = response.error
            raise self._failed(getattr(error, "code", None), getattr(error, "message", None) or "the response failed")
        parts: list[ModelResponsePart] = []
        pending: ThinkingPart | None = None  # a reasoning item waiting for the id of the item after it
        for item in response.output:
            converted = _output_parts(item)
            if not converted:
                continue
            if pending is not None and getattr(item, "id", None):
                pending.provider_data = {**(pending.provider_data or {}), "next_id": item.id}
            pending = converted[-1] if isinstance(converted[-1], ThinkingPart) else None
            parts.extend(converted)
        if not parts and response.status == "incomplete":
            reason = getattr(response.incomplete_details, "reason", None)
            raise UnexpectedModelBehavior(
                f"{self.system} model {self.model_name!r} stopped before answering ({reason or 'incomplete'})",
                body=response.model_dump_json(exclude_none=True),
            )
        return ModelResponse(
            parts=parts,
            usage=_usage(response.usage),
            model_name=response.model or self.model_name,
            finish_reason=_finish_reason(response),
        )

    def _failed(self, code: str | None, message: str) -> ModelHTTPError:
        """A response that failed on the provider's side (``response.failed``, a stream's ``error`` event)."""
        status = 429 if code == "rate_limit_exceeded" else None
        transient = code in _TRANSIENT_CODES or code is None
        return ModelHTTPError(
            f"{self.system} model {self.model_name!r} failed: {message}" + (f" ({code})" if code else ""),
            status_code=status,
            model_name=self.model_name,
            transient=transient,
        )

    def _responses_error(self, e: Any) -> ModelHTTPError:
        where = f"{self.system} model {self.model_name!r}"
        if isinstance(e, openai.APIStatusError):
            status = int(e.status_code)
            return ModelHTTPError(
                f"{where} failed with HTTP {status}: {_provider_message(e.body) or e.message}",
                status_code=status,
                model_name=self.model_name,
                transient=http_error_is_transient(status),
                retry_after=_retry_after(e.response.headers),
            )
        if isinstance(e, openai.APIConnectionError):  # includes APITimeoutError
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            return ModelHTTPError(
                f"{where}: could not get an answer from {self.base_url}: {e.message}{cause}",
                model_name=self.model_name,
                transient=True,
            )
        if isinstance(e, openai.APIResponseValidationError):
            return ModelHTTPError(
                f"{where} answered with data the SDK could not read: {e.message}",
                status_code=int(e.status_code),
                model_name=self.model_name,
            )
        # An error object inside a 200 stream: its code says whether retrying helps.
        body = e.body if isinstance(e.body, dict) else {}
        code = body.get("code")
        if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
            status = int(code)
            return ModelHTTPError(
                f"{where} failed while streaming: {_provider_message(e.body) or e.message}",
                status_code=status,
                model_name=self.model_name,
                transient=http_error_is_transient(status),
            )
        return self._failed(code if isinstance(code, str) else None, _provider_message(e.body) or e.message)


def _input_items(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            # Function outputs first: they answer the calls of the response just before.
            outputs: list[dict[str, Any]] = []
            others: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, SystemPromptPart):
                    others.append({"role": "system", "content": part.content})
                elif isinstance(part, UserPromptPart):
                    others.append({"role": "user", "content": responses_user_content(part.content)})
                elif isinstance(part, ToolReturnPart):
                    outputs.append(
                        {
                            "type": "function_call_output",
                            "call_id": part.tool_call_id,
                            "output": responses_tool_output(part),
                        }
                    )
                elif isinstance(part, RetryPromptPart):
                    if part.tool_call_id:
                        outputs.append(
                            {
                                "type": "function_call_output",
                                "call_id": part.tool_call_id,
                                "output": part.model_response(),
                            }
                        )
                    else:
                        others.append({"role": "user", "content": part.model_response()})
            items += outputs + others
        else:
            items += _response_items(message.parts)
    return items


def _response_items(parts: list[ModelResponsePart]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_id: str | None = None  # the id the API expects on the item after a reasoning item
    for part in parts:
        if isinstance(part, ThinkingPart):
            if part.provider_name != PROVIDER or not part.id:
                continue  # reasoning from another provider, or without an item to refer to
            data = part.provider_data or {}
            summary = data.get("summary")
            if summary is None:
                summary = [{"type": "summary_text", "text": part.content}] if part.content else []
            item: dict[str, Any] = {"type": "reasoning", "id": part.id, "summary": summary}
            if part.signature:
                item["encrypted_content"] = part.signature
            items.append(item)
            next_id = data.get("next_id")
            continue
        if isinstance(part, TextPart):
            if next_id is not None:
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "id": next_id,
                        "status": "completed",
                        "content": [{"type": "output_text", "text": part.content, "annotations": []}],
                    }
                )
            else:
                items.append({"role": "assistant", "content": part.content})
        elif isinstance(part, ToolCallPart):
            call: dict[str, Any] = {
                "type": "function_call",
                "call_id": part.tool_call_id,
                "name": part.tool_name,
                "arguments": part.args_as_json_str(),
            }
            if next_id is not None:
                call["id"] = next_id
            items.append(call)
        next_id = None
    return items


def _function_tool(tool: ToolDefinition, *, strict: bool | None) -> dict[str, Any]:
    # The Responses API treats a tool without "strict" as strict; perdure's schemas are not written for it.
    function: dict[str, Any] = {
        "type": "function",
        "name": tool.name,
        "parameters": _strict_schema(tool.parameters_json_schema) if strict else tool.parameters_json_schema,
        "strict": bool(strict),
    }
    if tool.description:
        function["description"] = tool.description
    return function


def _text_format(output: ToolDefinition, *, strict: bool | None) -> dict[str, Any]:
    schema = _strict_schema(output.parameters_json_schema) if strict else output.parameters_json_schema
    fmt: dict[str, Any] = {"type": "json_schema", "name": output.name, "schema": schema}
    if output.description:
        fmt["description"] = output.description
    if strict is not None:
        fmt["strict"] = strict
    return fmt


def _output_parts(item: Any) -> list[ModelResponsePart]:
    kind = item.type
    if kind == "reasoning":
        summary = [{"type": "summary_text", "text": s.text} for s in item.summary or ()]
        return [
            ThinkingPart(
                content="\n\n".join(s["text"] for s in summary),
                id=item.id,
                signature=item.encrypted_content,
                provider_name=PROVIDER,
                provider_data={"summary": summary},
            )
        ]
    if kind == "message":
        texts = [c.text if c.type == "output_text" else c.refusal for c in item.content or ()]
        return [TextPart(content="".join(texts))] if texts else []
    if kind == "function_call":
        return [ToolCallPart(tool_name=item.name, args=item.arguments, tool_call_id=item.call_id)]
    return []  # built-in tools' items (web search, ...) are not requested by perdure


def _finish_reason(response: Any) -> str | None:
    if response.status == "incomplete" and response.incomplete_details is not None:
        return str(response.incomplete_details.reason)
    return str(response.status) if response.status else None


def _usage(usage: Any) -> RequestUsage:
    if usage is None:
        return RequestUsage()
    details = usage.input_tokens_details
    cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    written = (getattr(details, "cache_write_tokens", 0) or 0) if details is not None else 0
    out_details = usage.output_tokens_details
    return RequestUsage(
        # OpenAI's input_tokens include the cached ones; perdure's are the full-rate rest.
        input_tokens=max(0, (usage.input_tokens or 0) - cached - written),
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=(getattr(out_details, "reasoning_tokens", 0) or 0) if out_details is not None else 0,
    )


class _StreamState:
    """Responses stream events → perdure events; the index is the item's ``output_index``."""

    def __init__(self) -> None:
        self.reasoning_index: int | None = None  # the reasoning item waiting for the next item's id

    def failure(self, raw: Any) -> tuple[str | None, str] | None:
        if raw.type == "error":
            return raw.code, raw.message
        if raw.type == "response.failed":
            error = raw.response.error
            return getattr(error, "code", None), getattr(error, "message", None) or "the response failed"
        return None

    def events(self, raw: Any, streamed: StreamedResponse) -> list[StreamEvent]:
        kind = raw.type
        if kind == "response.output_item.added":
            item = raw.item
            out: list[StreamEvent] = []
            if self.reasoning_index is not None and getattr(item, "id", None):
                out.append(ThinkingDelta(self.reasoning_index, provider_data={"next_id": item.id}))
            self.reasoning_index = None
            if item.type == "function_call":
                out.append(ToolCallDelta(raw.output_index, tool_name=item.name, tool_call_id=item.call_id))
            elif item.type == "reasoning":
                out.append(ThinkingDelta(raw.output_index, id=item.id, provider_name=PROVIDER))
            return out
        if kind == "response.output_text.delta":
            return [TextDelta(raw.output_index, raw.delta)]
        if kind == "response.refusal.delta":
            return [TextDelta(raw.output_index, raw.delta)]
        if kind == "response.function_call_arguments.delta":
            return [ToolCallDelta(raw.output_index, args_delta=raw.delta)]
        if kind == "response.reasoning_summary_text.delta":
            return [ThinkingDelta(raw.output_index, raw.delta)]
        if kind == "response.reasoning_summary_part.added" and raw.summary_index > 0:
            return [ThinkingDelta(raw.output_index, "\n\n")]  # summary parts joined as in a whole response
        if kind == "response.output_item.done" and raw.item.type == "reasoning":
            # The whole item: its summary as the API split it, and its encrypted content if asked for.
            item = raw.item
            self.reasoning_index = raw.output_index
            summary = [{"type": "summary_text", "text": s.text} for s in item.summary or ()]
            return [
                ThinkingDelta(
                    raw.output_index,
                    signature=item.encrypted_content,
                    provider_name=PROVIDER,
                    provider_data={"summary": summary},
                )
            ]
        if kind in ("response.completed", "response.incomplete"):
            response = raw.response
            if response.model:
                streamed.model_name = response.model
            streamed.usage = _usage(response.usage)
            streamed.finish_reason = _finish_reason(response)
        return []
