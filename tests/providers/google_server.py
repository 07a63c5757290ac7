"""Gemini API wire format for the fake provider server: ``generateContent`` bodies, SSE streams, errors.

Shapes follow the documented REST format of the Gemini Developer API (ai.google.dev/api/generate-content:
``GenerateContentResponse``, ``Candidate``, ``Part``, ``UsageMetadata``; errors are ``google.rpc.Status`` in an
``error`` object), camelCase as the API sends them. Streams are ``streamGenerateContent?alt=sse``: one
``data:`` event per ``GenerateContentResponse`` chunk, the last one carrying ``finishReason`` and usage.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from .fake_server import Canned


def text(value: str, *, thought: bool = False, signature: bytes | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": value}
    if thought:
        part["thought"] = True
    if signature is not None:
        part["thoughtSignature"] = base64.b64encode(signature).decode()
    return part


def call(name: str, args: dict[str, Any], *, id: str | None = None, signature: bytes | None = None) -> dict[str, Any]:
    function_call: dict[str, Any] = {"name": name, "args": args}
    if id is not None:
        function_call["id"] = id
    part: dict[str, Any] = {"functionCall": function_call}
    if signature is not None:
        part["thoughtSignature"] = base64.b64encode(signature).decode()
    return part


def usage_metadata(prompt: int, candidates: int, thoughts: int = 0, cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    return usage


def gemini_response(
    parts: Sequence[dict[str, Any]],
    *,
    finish_reason: str = "STOP",
    usage: dict[str, Any] | None = None,
    model: str = "gemini-test-001",
) -> Canned:
    """A ``generateContent`` answer with one candidate."""
    return Canned(
        body={
            "candidates": [
                {"content": {"parts": list(parts), "role": "model"}, "finishReason": finish_reason, "index": 0}
            ],
            "usageMetadata": usage or usage_metadata(10, 5),
            "modelVersion": model,
            "responseId": "resp-1",
        }
    )


def gemini_stream(
    chunks: Sequence[Sequence[dict[str, Any]]],
    *,
    finish_reason: str = "STOP",
    usage: dict[str, Any] | None = None,
    model: str = "gemini-test-001",
    error: dict[str, Any] | None = None,
) -> Canned:
    """A ``streamGenerateContent?alt=sse`` answer: each chunk's parts in one event; ``error`` breaks it off."""
    events: list[tuple[str | None, Any]] = []
    for i, parts in enumerate(chunks):
        last = i == len(chunks) - 1
        candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
        if last and error is None:
            candidate["finishReason"] = finish_reason
        chunk: dict[str, Any] = {
            "candidates": [candidate],
            "usageMetadata": (usage or usage_metadata(10, 5)) if last else {"promptTokenCount": 10},
            "modelVersion": model,
            "responseId": "resp-1",
        }
        events.append((None, chunk))
    if error is not None:
        events.append((None, {"error": error}))
    return Canned(events=events)


def gemini_error(status: int, message: str, *, details: list[dict[str, Any]] | None = None) -> Canned:
    """An error body as the API sends it: ``{"error": {"code", "message", "status"}}``."""
    names = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }
    error: dict[str, Any] = {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return Canned(status=status, body={"error": error})


def wire(value: Any) -> Any:
    """A request body with every key in lowerCamelCase.

    The SDK converts the fields it knows to the API's camelCase and passes nested objects it does not convert
    (thinking config, function declarations) in snake_case, which the API's proto-JSON parser also accepts;
    tests compare the one spelling.
    """
    if isinstance(value, dict):
        return {_camel(k): wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.title() for word in rest)
