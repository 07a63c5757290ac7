"""Scripted agents shared by the Temporal tests and the history recorder (import-light: no pytest)."""

from __future__ import annotations

from pydantic import BaseModel

from perdure import Agent, ModelRetry
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel

PAGE = 1000  # bytes of tool result per turn: the conversation grows by about this much each turn


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def reader(
    name: str, pages: int, fetched: list[int], *, approve_at: int | None = None, fetch_tool: str = "fetch"
) -> Agent[None, str]:
    """Reads ``pages`` pages, one tool call per turn (two in parallel every third turn); page ``approve_at``
    needs an approval. ``fetch_tool`` renames the fetch tool (a changed agent, for the replay test)."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = len(returns(messages))
        if done >= pages:
            return ModelResponse(
                parts=[TextPart(content=f"read {done} pages, {sum(len(r.content) for r in returns(messages))} bytes")]
            )
        tool = "fetch_gated" if done == approve_at else fetch_tool
        parts = [ToolCallPart(tool_name=tool, args={"page": done}, tool_call_id=f"c{done}")]
        if done % 3 == 2 and done + 1 < pages and done + 1 != approve_at:
            parts.append(ToolCallPart(tool_name=fetch_tool, args={"page": done + 1}, tool_call_id=f"c{done + 1}"))
        return ModelResponse(parts=parts)

    agent: Agent[None, str] = Agent(FunctionModel(answer, model_name="reader"), name=name)

    def fetch(page: int) -> str:
        """Fetch a page."""
        fetched.append(page)
        return f"page {page}: " + "x" * PAGE

    fetch.__name__ = fetch_tool
    agent.tool_plain(fetch)

    @agent.tool_plain(requires_approval=True)
    def fetch_gated(page: int) -> str:
        """Fetch a page someone must approve."""
        fetched.append(page)
        return f"page {page}: " + "y" * PAGE

    return agent


class Order(BaseModel):
    """An order."""

    item: str
    total_cents: int


def shopper(name: str) -> Agent[None, Order]:
    """Asks for a price the tool refuses (``ModelRetry``), then a good one, then answers with an ``Order``."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = returns(messages)
        retried = any(p.part_kind == "retry-prompt" for m in messages if isinstance(m, ModelRequest) for p in m.parts)
        if not retried:
            return ModelResponse(parts=[ToolCallPart(tool_name="price", args={"item": "unicorn"}, tool_call_id="p1")])
        if not done:
            return ModelResponse(parts=[ToolCallPart(tool_name="price", args={"item": "book"}, tool_call_id="p2")])
        args = {"item": "book", "total_cents": int(done[0].content)}
        return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args=args, tool_call_id="o1")])

    agent: Agent[None, Order] = Agent(FunctionModel(answer, model_name="shopper"), name=name, output_type=Order)

    @agent.tool_plain
    def price(item: str) -> int:
        """The price of an item, in cents."""
        if item != "book":
            raise ModelRetry(f"we do not sell {item!r}; try a book")
        return 1200

    return agent
