"""What the SDK-based providers share: an SDK client per event loop, Retry-After parsing, error bodies."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..messages import ModelMessage, ModelRequest

__all__ = ["LoopClient", "last_instructions", "provider_message", "retry_after", "strict_schema"]


class LoopClient:
    """An SDK client tied to one event loop, closed when that loop shuts down.

    ``asyncio.run`` finalizes the async generators still open on its loop before closing it; ``guard`` is
    such a generator, so the client's connections are closed on the loop that opened them instead of leaking
    (a pooled connection cannot be reused, or even closed, from another loop).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.guard = self._close_at_shutdown()

    @classmethod
    async def open(cls, client: Any) -> LoopClient:
        entry = cls(client)
        await anext(entry.guard)
        return entry

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.client.close()


def last_instructions(messages: list[ModelMessage]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            return message.instructions
    return None


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` fit for strict mode: every object says ``additionalProperties: false``.

    OpenAI's and Anthropic's strict modes refuse object schemas that leave extra properties open, which
    pydantic's schemas do by default. Properties are not made required: a schema with optional properties is
    the caller's to fix, and the provider's error says which.
    """

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: visit(value) for key, value in node.items()}
        if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = visit(schema)
    return result


def provider_message(body: object) -> str | None:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    elif isinstance(body, str) and body:
        return body
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
