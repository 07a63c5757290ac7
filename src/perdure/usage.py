"""Usage counters and limits.

Usage is recorded with every model response, so on a durable engine the totals — and the ``UsageLimits``
checked against them — hold across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from ._exceptions import UsageLimitExceeded

__all__ = ["RequestUsage", "Usage", "UsageLimits"]


class RequestUsage(BaseModel):
    """Tokens of one model request, as the provider reported them."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class Usage:
    """Totals for a run: model requests, tokens and tool calls."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add_response(self, usage: RequestUsage) -> None:
        self.requests += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.tool_calls + other.tool_calls,
        )


@dataclass(frozen=True, kw_only=True)
class UsageLimits:
    """Bounds on a run's usage, checked before each model request and after each response.

    ``UsageLimits(request_limit=10, total_tokens_limit=50_000)``; ``None`` means unbounded.
    """

    request_limit: int | None = 50
    tool_calls_limit: int | None = None
    input_tokens_limit: int | None = None
    output_tokens_limit: int | None = None
    total_tokens_limit: int | None = None

    def check_before_request(self, usage: Usage) -> None:
        if self.request_limit is not None and usage.requests + 1 > self.request_limit:
            raise UsageLimitExceeded(f"the next request would exceed the request_limit of {self.request_limit}")
        self._check_tokens(usage)

    def check_tool_calls(self, usage: Usage, new_calls: int) -> None:
        if self.tool_calls_limit is not None and usage.tool_calls + new_calls > self.tool_calls_limit:
            raise UsageLimitExceeded(
                f"the next tool calls would exceed the tool_calls_limit of {self.tool_calls_limit} "
                f"(tool_calls={usage.tool_calls + new_calls})"
            )

    def check_after_response(self, usage: Usage) -> None:
        self._check_tokens(usage)

    def _check_tokens(self, usage: Usage) -> None:
        for limit, value, name in (
            (self.input_tokens_limit, usage.input_tokens, "input_tokens"),
            (self.output_tokens_limit, usage.output_tokens, "output_tokens"),
            (self.total_tokens_limit, usage.total_tokens, "total_tokens"),
        ):
            if limit is not None and value > limit:
                raise UsageLimitExceeded(f"exceeded the {name}_limit of {limit} ({name}={value})")
