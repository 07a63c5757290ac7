"""Scripted agents shared by the Temporal tests and the history recorder (import-light: no pytest)."""

from __future__ import annotations

from perdure import Agent
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel

PAGE = 1000  # bytes of tool result per turn: the conversation grows by about this much each turn


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def reader(name: str, pages: int, fetched: list[int], *, approve_at: int | None = None) -> Agent[None, str]:
    """Reads ``pages`` pages, one tool call per turn (two in parallel every third turn); page ``approve_at``
    needs an approval."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = len(returns(messages))
        if done >= pages:
            return ModelResponse(
                parts=[TextPart(content=f"read {done} pages, {sum(len(r.content) for r in returns(messages))} bytes")]
            )
        tool = "fetch_gated" if done == approve_at else "fetch"
        parts = [ToolCallPart(tool_name=tool, args={"page": done}, tool_call_id=f"c{done}")]
        if done % 3 == 2 and done + 1 < pages and done + 1 != approve_at:
            parts.append(ToolCallPart(tool_name="fetch", args={"page": done + 1}, tool_call_id=f"c{done + 1}"))
        return ModelResponse(parts=parts)

    agent: Agent[None, str] = Agent(FunctionModel(answer, model_name="reader"), name=name)

    @agent.tool_plain
    def fetch(page: int) -> str:
        """Fetch a page."""
        fetched.append(page)
        return f"page {page}: " + "x" * PAGE

    @agent.tool_plain(requires_approval=True)
    def fetch_gated(page: int) -> str:
        """Fetch a page someone must approve."""
        fetched.append(page)
        return f"page {page}: " + "y" * PAGE

    return agent
