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
    """Tokens of one model request, as the provider reported them, in the same terms for every provider.

    ``input_tokens`` are the input tokens billed at the full rate: those neither read from the provider's
    prompt cache (``cache_read_tokens``) nor written to it (``cache_write_tokens``); ``total_input_tokens``
    adds the three (OpenAI's ``prompt_tokens``). ``reasoning_tokens`` are the part of ``output_tokens`` the
    model spent thinking. Records written before these fields existed load with 0 for them.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """Every input token: full-rate, read from the cache and written to it."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens


@dataclass
class Usage:
    """Totals for a run: model requests, tokens (in ``RequestUsage``'s terms) and tool calls."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """Every input token: full-rate, read from the cache and written to it."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens

    def add_response(self, usage: RequestUsage) -> None:
        self.requests += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.reasoning_tokens += usage.reasoning_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.tool_calls + other.tool_calls,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
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
    """Every token: input (cached or not) and output."""
    cache_read_tokens_limit: int | None = None
    cache_write_tokens_limit: int | None = None
    reasoning_tokens_limit: int | None = None

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
            (self.cache_read_tokens_limit, usage.cache_read_tokens, "cache_read_tokens"),
            (self.cache_write_tokens_limit, usage.cache_write_tokens, "cache_write_tokens"),
            (self.reasoning_tokens_limit, usage.reasoning_tokens, "reasoning_tokens"),
        ):
            if limit is not None and value > limit:
                raise UsageLimitExceeded(f"exceeded the {name}_limit of {limit} ({name}={value})")
