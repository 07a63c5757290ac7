"""Operations: everything non-deterministic in a run, as serializable descriptions.

The loop yields these; an engine executes (or replays) them and sends back the result:

=================  ==========================  ==================================
operation          step key                    result
=================  ==========================  ==================================
``ModelStep``      ``turn/3/model``            ``ModelResponse``
``ToolStep``       ``turn/3/tool/<call id>``   ``ToolOutcome``
``WaitStep``       ``turn/3/approval/<id>``    ``Decision``
``Batch``          (several of the above, executed concurrently; results in the same order)
=================  ==========================  ==================================

Step keys are persisted compatibility data (pinned by a test): renaming Python code never changes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ._tools import SideEffects, ToolOutcome
from .messages import ModelMessage, ModelResponse
from .models import ModelRequestParameters, ModelSettings
from .usage import Usage

__all__ = [
    "Batch",
    "Decision",
    "ModelStep",
    "Operation",
    "Step",
    "StepResult",
    "ToolOutcome",
    "ToolStep",
    "WaitStep",
]


def model_key(turn: int) -> str:
    return f"turn/{turn}/model"


def tool_key(turn: int, tool_call_id: str) -> str:
    return f"turn/{turn}/tool/{tool_call_id}"


def approval_key(turn: int, tool_call_id: str) -> str:
    return f"turn/{turn}/approval/{tool_call_id}"


def unknown_key(turn: int, tool_call_id: str) -> str:
    return f"turn/{turn}/unknown/{tool_call_id}"


class Decision(BaseModel):
    """A human's decision on a waiting step: approve (the tool runs) or deny (the model gets the note)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    approved: bool
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelStep:
    key: str
    turn: int
    model_name: str
    messages: list[ModelMessage]
    settings: ModelSettings | None
    params: ModelRequestParameters
    kind: Literal["model"] = "model"

    @property
    def new_messages_from(self) -> int:
        """Index of the first message that no earlier model step of this run sent (for delta shipping)."""
        return max(0, len(self.messages) - 2)

    def describe(self) -> str:
        tools = ", ".join(sorted(t.name for t in self.params.tools))
        return f"a model request (model={self.model_name}, tools=[{tools}])"


@dataclass(frozen=True, kw_only=True)
class ToolStep:
    key: str
    turn: int
    tool_name: str
    args: dict[str, Any]
    tool_call_id: str
    side_effects: SideEffects
    idempotency_key: str
    retry: int = 0
    usage: Usage | None = field(default=None, compare=False)
    """The run's usage when the model asked for this call (what ``ctx.usage`` shows the tool); not recorded."""
    model_name: str = field(default="", compare=False)
    kind: Literal["tool"] = "tool"

    def describe(self) -> str:
        return f"a call of tool {self.tool_name!r}"


@dataclass(frozen=True, kw_only=True)
class WaitStep:
    """Wait for a human decision on ``tool_name(args)``: an approval, or an unknown outcome to settle."""

    key: str
    turn: int
    reason: Literal["approval", "unknown_outcome"]
    tool_name: str
    args: dict[str, Any]
    tool_call_id: str
    kind: Literal["wait"] = "wait"

    def describe(self) -> str:
        what = "an approval" if self.reason == "approval" else "a decision on the unknown outcome"
        return f"{what} of tool {self.tool_name!r}"


Step = ModelStep | ToolStep | WaitStep
StepResult = ModelResponse | ToolOutcome | Decision


@dataclass(frozen=True)
class Batch:
    """Steps to execute concurrently (parallel tool calls); results come back in this order."""

    steps: tuple[Step, ...] = field(default_factory=tuple)


Operation = Step | Batch


def step_kind(key: str) -> str:
    """``model``, ``tool``, ``approval`` or ``unknown`` from a step key."""
    parts = key.split("/")
    return parts[2] if len(parts) > 2 else key
