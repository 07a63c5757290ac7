"""An offline stand-in for a real model, so that these examples run anywhere: it calls the given tools, one
call per turn, then answers. (Testing your agents: ``FunctionModel`` and ``TestModel``.)"""

from typing import Any

from perdure.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from perdure.testing import AgentInfo, FunctionModel


def model(*calls: tuple[str, dict[str, Any]], answer: str) -> FunctionModel:
    """A model that makes ``calls`` in turn (``(tool name, args)``), then answers ``answer``."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages)
        if turn < len(calls):
            name, args = calls[turn]
            return ModelResponse(parts=[ToolCallPart(tool_name=name, args=args, tool_call_id=f"call-{turn + 1}")])
        return ModelResponse(parts=[TextPart(content=answer)])

    return FunctionModel(respond, model_name="scripted")
