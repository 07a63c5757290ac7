"""Scripted agents for the observability tests; the SECRET-* strings must never reach a span by default."""

from __future__ import annotations

from typing import Any

from perdure import Agent, ModelHTTPError, ModelRetry
from perdure.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from perdure.models import RetryConfig
from perdure.models.function import AgentInfo, FunctionModel
from perdure.usage import RequestUsage

PROMPT = "SECRET-PROMPT look it up"


def _responses(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, ModelResponse))


def lookup_agent(*, name: str = "lookup", fail_first: int = 0, tool_raises: bool = False) -> Agent[None, str]:
    """Turn 1 calls ``lookup(code="SECRET-ARG")``; turn 2 answers ``SECRET-OUTPUT``.

    ``fail_first``: the first requests fail with a transient HTTP 503 (retried).
    """
    failures = {"left": fail_first}

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if failures["left"]:
            failures["left"] -= 1
            raise ModelHTTPError("overloaded", status_code=503, transient=True)
        usage = RequestUsage(input_tokens=10 * (1 + _responses(messages)), output_tokens=3)
        if _responses(messages) == 0:
            call = ToolCallPart(tool_name="lookup", args={"code": "SECRET-ARG"}, tool_call_id="c1")
            return ModelResponse(parts=[call], usage=usage, finish_reason="tool_call")
        return ModelResponse(parts=[TextPart(content="SECRET-OUTPUT")], usage=usage, finish_reason="stop")

    agent: Agent[None, str] = Agent(
        FunctionModel(model, model_name="scripted"),
        name=name,
        retry_config=RetryConfig(initial_delay=0.001, max_delay=0.001),
    )

    @agent.tool_plain
    def lookup(code: str) -> str:
        """Look a code up."""
        if tool_raises:
            raise ValueError("the lookup service is down")
        return f"SECRET-RESULT for {code}"

    return agent


def parallel_agent() -> Agent[None, str]:
    """Turn 1 calls two tools at once (one asks the model to retry); turn 2 answers."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _responses(messages) == 0:
            return ModelResponse(
                parts=[
                    ToolCallPart(tool_name="a", args={}, tool_call_id="p1"),
                    ToolCallPart(tool_name="b", args={}, tool_call_id="p2"),
                ]
            )
        return ModelResponse(parts=[TextPart(content="done")])

    agent: Agent[None, str] = Agent(FunctionModel(model, model_name="scripted"), name="parallel")

    @agent.tool_plain
    def a() -> str:
        """A."""
        return "a"

    @agent.tool_plain
    def b() -> str:
        """B."""
        raise ModelRetry("try again later")

    return agent


def approval_agent() -> Agent[None, str]:
    """Turn 1 calls ``refund(amount=42)``, which needs a human's approval; turn 2 answers."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _responses(messages) == 0:
            return ModelResponse(parts=[ToolCallPart(tool_name="refund", args={"amount": 42}, tool_call_id="r1")])
        return ModelResponse(parts=[TextPart(content="refunded")])

    agent: Agent[None, str] = Agent(FunctionModel(model, model_name="scripted"), name="refunds")

    @agent.tool_plain(requires_approval=True)
    def refund(amount: int) -> str:
        """Refund an amount."""
        return f"refunded {amount}"

    return agent


def attributes_of(spans: list[Any]) -> list[Any]:
    """Every attribute and event-attribute value of ``spans``, for content checks."""
    values: list[Any] = []
    for s in spans:
        values.extend((s.attributes or {}).values())
        for e in s.events:
            values.extend((e.attributes or {}).values())
    return values
