"""Small helpers for scripting a ``FunctionModel`` turn by turn, as a user testing their agent would."""

from collections.abc import Callable
from typing import Any

from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from perdure.models.function import AgentInfo, FunctionModel

Turn = ModelResponse | Callable[[list[ModelMessage], AgentInfo], ModelResponse]


class Script:
    """A ``FunctionModel`` that answers with ``turns`` in order and records what it was sent."""

    def __init__(self, *turns: Turn) -> None:
        self.turns = list(turns)
        self.seen: list[list[ModelMessage]] = []
        self.infos: list[AgentInfo] = []
        self.model = FunctionModel(self._answer, model_name="scripted")

    def _answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.seen.append(list(messages))
        self.infos.append(info)
        if not self.turns:
            raise AssertionError("the model was asked more often than scripted")
        turn = self.turns.pop(0)
        return turn if isinstance(turn, ModelResponse) else turn(messages, info)

    def last_request(self, n: int) -> ModelRequest:
        """The last message the model was sent in its ``n``-th request (0-based)."""
        message = self.seen[n][-1]
        assert isinstance(message, ModelRequest)
        return message


def call(tool_name: str, args: dict[str, Any] | str | None = None, call_id: str = "") -> ModelResponse:
    return ModelResponse(
        parts=[ToolCallPart(tool_name=tool_name, args=args if args is not None else {}, tool_call_id=call_id)]
    )


def calls(*parts: ToolCallPart) -> ModelResponse:
    return ModelResponse(parts=list(parts))


def text(content: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content=content)])
