"""Scripted agents for the Prefect adapter's tests: every executed model request and tool call is counted."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from perdure import Agent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel

Script = Callable[[list[ModelMessage], int], ModelResponse]


def call(tool: str, call_id: str, **args: Any) -> ToolCallPart:
    return ToolCallPart(tool_name=tool, args=args, tool_call_id=call_id)


def text(content: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content=content)])


def returns(messages: list[ModelMessage]) -> str:
    parts = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
    return "; ".join(f"{p.tool_name}={p.model_response_str()}" for p in parts)


class Counted:
    """An agent whose model requests are counted in ``requests`` (turn numbers) and tool calls in ``calls``."""

    def __init__(self, name: str, script: Script, **agent_options: Any) -> None:
        self.requests: list[int] = []
        self.calls: list[tuple[str, Any]] = []

        def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            turn = 1 + sum(1 for m in messages if isinstance(m, ModelResponse))
            self.requests.append(turn)
            return script(messages, turn)

        self.agent: Agent[Any, Any] = Agent(FunctionModel(fn, model_name="scripted"), name=name, **agent_options)

    def tool(self, name: str, result: Callable[[RunContext[Any], int], Any] | None = None, **options: Any) -> None:
        """A tool ``name(ctx, amount)`` that counts its calls and returns ``result(ctx, amount)``."""

        async def tool(ctx: RunContext[Any], amount: int) -> Any:
            self.calls.append((name, amount))
            value = result(ctx, amount) if result is not None else f"{name} {amount}"
            return await value if inspect.isawaitable(value) else value

        tool.__name__ = name
        tool.__doc__ = f"{name}.\n\nArgs:\n    amount: how much."
        self.agent.tool(**options)(tool)

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)


def one_tool_then_text(tool: str, *, amount: int = 1, call_id: str = "c1") -> Script:
    def script(messages: list[ModelMessage], turn: int) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[call(tool, call_id, amount=amount)])
        return text(f"done: {returns(messages)}")

    return script
