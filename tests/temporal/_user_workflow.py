"""A user's own workflow that runs an agent inside it: the sandbox re-imports this module for every run, so it
imports nothing but temporalio, pydantic and perdure (no pytest)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from perdure import Agent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel
from perdure.temporal import TemporalAgent


class Customer(BaseModel):
    name: str
    tier: str


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
    asked = [
        p.content for m in messages if isinstance(m, ModelRequest) for p in m.parts if p.part_kind == "user-prompt"
    ]
    if "refund" in str(asked[-1]) and not any(r.tool_name == "refund" for r in returns):
        return ModelResponse(parts=[ToolCallPart(tool_name="refund", args={"cents": 500}, tool_call_id="r1")])
    if not any(r.tool_name == "lookup" for r in returns):
        return ModelResponse(parts=[ToolCallPart(tool_name="lookup", args={}, tool_call_id="l1")])
    summary = "; ".join(f"{r.tool_name}={r.content}" for r in returns)
    return ModelResponse(parts=[TextPart(content=f"{info.instructions} | {summary}")])


agent: Agent[Customer, str] = Agent(
    FunctionModel(_answer, model_name="support-model"), name="support", deps_type=Customer
)


@agent.instructions
def _who(ctx: RunContext[Customer]) -> str:
    return f"Helping {ctx.deps.name} ({ctx.deps.tier})."


@agent.tool
def lookup(ctx: RunContext[Customer]) -> str:
    """Look up the customer's last order."""
    return f"order 42 of {ctx.deps.name}"


@agent.tool(requires_approval=True)
def refund(ctx: RunContext[Customer], cents: int) -> str:
    """Refund the customer."""
    return f"refunded {cents} to {ctx.deps.name}"


support = TemporalAgent(agent)


@workflow.defn(name="SupportTicket")
class SupportTicket:
    """Answers a ticket, then a follow-up in the same conversation, as one workflow."""

    @workflow.run
    async def run(self, customer: dict[str, Any]) -> list[str]:
        deps = Customer.model_validate(customer)
        first = await support.run("where is my order?", deps=deps)
        second = await support.run("please refund it", deps=deps, message_history=first.all_messages())
        return [first.output, second.output, first.run_id, second.run_id]
