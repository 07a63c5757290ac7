"""Agents of the DBOS adapter's tests, scripted with ``FunctionModel`` (no network)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from perdure import Agent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel


class Booking(BaseModel):
    city: str
    nights: int


def turn(messages: list[ModelMessage]) -> int:
    return 1 + sum(1 for m in messages if isinstance(m, ModelResponse))


def returns(messages: list[ModelMessage]) -> str:
    parts = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
    return "; ".join(f"{p.tool_name}={p.model_response_str()}" for p in parts)


def call(tool: str, call_id: str, **args: Any) -> ToolCallPart:
    return ToolCallPart(tool_name=tool, args=args, tool_call_id=call_id)


def one_tool(name: str = "tools", **tool_options: Any) -> tuple[Agent[Any, str], list[str]]:
    """Calls ``stamp(n=7)`` once, then answers with what it returned. The list collects executed calls."""
    executed: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn(messages) == 1:
            return ModelResponse(parts=[call("stamp", "c1", n=7)])
        return ModelResponse(parts=[TextPart(content=f"done: {returns(messages)}")])

    agent: Agent[Any, str] = Agent(FunctionModel(script, model_name="scripted"), name=name)

    @agent.tool(**tool_options)
    def stamp(ctx: RunContext[Any], n: int) -> str:
        """Stamp a number."""
        executed.append(f"{ctx.run_id}:{ctx.idempotency_key}")
        return f"stamp {n} by {ctx.deps}"

    return agent, executed


def parallel(name: str = "parallel") -> tuple[Agent[Any, str], list[str]]:
    """Three tool calls in one response, ids out of order; they finish in the reverse order of their ids."""
    finished: list[str] = []
    done = {cid: asyncio.Event() for cid in ("p1", "p2", "p3")}
    after = {"p1": "p2", "p2": "p3"}  # p1 finishes after p2, which finishes after p3

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn(messages) == 1:
            return ModelResponse(parts=[call("work", "p3"), call("work", "p1"), call("work", "p2")])
        return ModelResponse(parts=[TextPart(content=f"done: {returns(messages)}")])

    agent: Agent[Any, str] = Agent(FunctionModel(script, model_name="scripted"), name=name)

    @agent.tool
    async def work(ctx: RunContext[Any]) -> str:
        """Work until the calls it waits for are done."""
        cid = str(ctx.tool_call_id)
        if cid in after:
            await done[after[cid]].wait()
        finished.append(cid)
        done[cid].set()
        return f"{cid} done"

    return agent, finished


def approval(name: str = "refunds") -> tuple[Agent[Any, str], list[str]]:
    """Asks for ``refund(cents=4200)``, which needs a human's approval."""
    executed: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn(messages) == 1:
            return ModelResponse(parts=[call("refund", "r1", cents=4200)])
        return ModelResponse(parts=[TextPart(content=f"refund: {returns(messages)}")])

    agent: Agent[Any, str] = Agent(FunctionModel(script, model_name="scripted"), name=name)

    @agent.tool(requires_approval=True)
    def refund(ctx: RunContext[Any], cents: int) -> str:
        """Refund an amount."""
        executed.append(str(ctx.run_id))
        return f"refunded {cents}"

    return agent, executed


def structured(name: str = "bookings") -> tuple[Agent[Any, Booking], list[int]]:
    """Answers with a ``Booking``; the list counts the model requests executed."""
    requests: list[int] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        requests.append(1)
        return ModelResponse(parts=[call(info.output_tools[0].name, "o1", city="Lisbon", nights=3)])

    return Agent(FunctionModel(script, model_name="scripted"), name=name, output_type=Booking), requests


def plain(name: str = "plain", answer: str = "hello") -> Agent[Any, str]:
    return Agent(
        FunctionModel(lambda m, i: ModelResponse(parts=[TextPart(content=answer)]), model_name="scripted"), name=name
    )
