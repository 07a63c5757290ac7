"""perdure: durable AI agents.

A run survives crashes, restarts and deploys and continues where it stopped, without repeating model calls or
tool side effects that already happened::

    from perdure import Agent, DurableAgent

    agent = Agent("openai:gpt-4.1-mini", name="refunds", instructions="Refund politely.")
    durable = DurableAgent(agent)              # one SQLite file: perdure.db
    result = durable.run_sync("Refund order 42", run_id="refund-42")

Engines: ``DurableAgent`` (embedded SQLite, here), ``perdure.dbos.DBOSAgent``,
``perdure.temporal.TemporalAgent``, ``perdure.prefect.PrefectAgent``. Plain ``agent.run()`` is not durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._agent import Agent
from ._context import RunContext
from ._exceptions import (
    AgentRunError,
    ApprovalRequired,
    MissingExtra,
    ModelHTTPError,
    ModelRetry,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
    RunInProgress,
    RunWaiting,
    ToolError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from ._loop import AgentRunResult
from ._tools import Tool
from .runs import PendingDecision, RunInfo, RunStatus, StepInfo
from .usage import Usage, UsageLimits

if TYPE_CHECKING:
    from .local import DurableAgent

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentRunError",
    "AgentRunResult",
    "ApprovalRequired",
    "DurableAgent",
    "MissingExtra",
    "ModelHTTPError",
    "ModelRetry",
    "NonDeterminismError",
    "PendingDecision",
    "PerdureError",
    "RunCancelled",
    "RunContext",
    "RunInProgress",
    "RunInfo",
    "RunStatus",
    "RunWaiting",
    "StepInfo",
    "Tool",
    "ToolError",
    "UnexpectedModelBehavior",
    "Usage",
    "UsageLimitExceeded",
    "UsageLimits",
    "UserError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The embedded engine is imported on first use, so `import perdure` stays fast for plain agents.
    if name == "DurableAgent":
        from . import local

        return getattr(local, name)
    raise AttributeError(f"module 'perdure' has no attribute {name!r}")
