from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .usage import Usage

__all__ = ["RunContext"]

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, kw_only=True)
class RunContext(Generic[DepsT]):
    """What a tool, an instructions function or an output validator knows about the run.

    In a tool call, ``idempotency_key`` is stable across retries and resumes of that call: pass it to outside
    APIs (payments, email) so that an at-least-once retry becomes effectively-once::

        @agent.tool
        async def charge(ctx: RunContext[Bank], cents: int) -> str:
            return await ctx.deps.charge(cents, idempotency_key=ctx.idempotency_key)
    """

    deps: DepsT
    run_id: str
    prompt: str | None = None
    usage: Usage = field(default_factory=Usage)
    model_name: str = ""
    tool_name: str | None = None
    tool_call_id: str | None = None
    step_key: str | None = None
    idempotency_key: str | None = None
    retry: int = 0
    """How many times this tool (or the output) was retried so far in this run."""
