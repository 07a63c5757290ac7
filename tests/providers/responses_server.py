"""OpenAI Responses API wire format for the fake provider server: ``response`` bodies and SSE event streams.

Shapes follow OpenAI's API reference for ``POST /v1/responses`` (the ``response`` object, its ``output`` items
``message``/``function_call``/``reasoning``, ``usage`` with ``input_tokens_details``/``output_tokens_details``)
and its streaming events (``response.created``, ``response.output_item.added``/``done``,
``response.output_text.delta``, ``response.function_call_arguments.delta``,
``response.reasoning_summary_text.delta``, ``response.completed``, ``response.failed``, ``error``), each sent
with ``event:`` set to its ``type`` and a ``sequence_number``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fake_server import Canned


def message(text: str, *, id: str = "msg_1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(call_id: str, name: str, arguments: str, *, id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": id or f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def reasoning(id: str, summary: Sequence[str] = (), *, encrypted: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": id,
        "summary": [{"type": "summary_text", "text": text} for text in summary],
    }
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def usage(
    input_tokens: int = 10, output_tokens: int = 5, *, cached: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def response_body(
    output: Sequence[dict[str, Any]],
    *,
    status: str = "completed",
    usage_: dict[str, Any] | None = None,
    model: str = "gpt-test-2025",
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": list(output),
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage_ if usage_ is not None else (usage() if status != "in_progress" else None),
        "user": None,
        "metadata": {},
    }


def openai_response(output: Sequence[dict[str, Any]], **options: Any) -> Canned:
    """A ``response`` object as ``POST /v1/responses`` answers it."""
    return Canned(body=response_body(output, **options))


def responses_stream(
    output: Sequence[dict[str, Any]],
    *,
    pieces: int = 2,
    usage_: dict[str, Any] | None = None,
    model: str = "gpt-test-2025",
    fail: dict[str, Any] | None = None,
    error_event: dict[str, Any] | None = None,
) -> Canned:
    """The event stream that produces ``output``: text, arguments and summaries arrive in ``pieces`` deltas.

    ``fail`` ends the stream with ``response.failed`` carrying that error; ``error_event`` with an ``error`` event.
    """
    events: list[dict[str, Any]] = []
    events.append({"type": "response.created", "response": response_body([], status="in_progress", model=model)})
    for index, item in enumerate(output):
        kind = item["type"]
        if kind == "message":
            added = {**item, "status": "in_progress", "content": []}
        elif kind == "function_call":
            added = {**item, "status": "in_progress", "arguments": ""}
        else:
            added = {**item, "summary": []}
            added.pop("encrypted_content", None)
        events.append({"type": "response.output_item.added", "output_index": index, "item": added})
        if kind == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
            for piece in _split(text, pieces):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                )
        elif kind == "function_call":
            for piece in _split(item["arguments"], pieces):
                events.append(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "delta": piece,
                    }
                )
        else:
            for summary_index, summary in enumerate(item["summary"]):
                part = {"type": "summary_text", "text": ""}
                events.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        "item_id": item["id"],
                        "output_index": index,
                        "summary_index": summary_index,
                        "part": part,
                    }
                )
                for piece in _split(summary["text"], pieces):
                    events.append(
                        {
                            "type": "response.reasoning_summary_text.delta",
                            "item_id": item["id"],
                            "output_index": index,
                            "summary_index": summary_index,
                            "delta": piece,
                        }
                    )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    if error_event is not None:
        events.append({"type": "error", **error_event})
    elif fail is not None:
        events.append(
            {"type": "response.failed", "response": response_body(output, status="failed", error=fail, model=model)}
        )
    else:
        events.append({"type": "response.completed", "response": response_body(output, usage_=usage_, model=model)})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return Canned(events=[(event["type"], event) for event in events])


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
