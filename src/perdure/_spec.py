"""``AgentSpec``: the frozen view of an agent that the loop, the step functions and telemetry consume.

The loop reads an agent only through this snapshot (never ``Agent``'s private attributes), and nothing below
``_agent`` imports ``Agent``: the data flows one way, from the definition to the code that runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._output import OutputSchema
    from ._tools import Tool
    from .models import ModelSettings, RetryConfig

__all__ = ["AgentSpec", "SupportsSpec", "spec_of"]


@dataclass(frozen=True, eq=False)
class AgentSpec:
    """What a run of an agent needs to know about it, taken when the run (or step) starts."""

    name: str | None
    instructions: Sequence[Any]
    """Strings, or functions of the ``RunContext`` (sync or async) returning one."""
    system_prompts: Sequence[str]
    tools: Mapping[str, Tool]
    output: OutputSchema
    output_validators: Sequence[Callable[..., Any]]
    retries: int
    output_retries: int
    model_settings: ModelSettings | None
    retry_config: RetryConfig
    source: Any = None
    """The agent this was taken from (telemetry settings are kept per agent)."""


@runtime_checkable
class SupportsSpec(Protocol):
    """Anything that can give its ``AgentSpec``: an ``Agent``."""

    name: str | None

    def spec(self) -> AgentSpec: ...


def spec_of(agent: AgentSpec | SupportsSpec) -> AgentSpec:
    return agent if isinstance(agent, AgentSpec) else agent.spec()
