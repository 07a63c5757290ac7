"""The embedded engine: durable runs on one SQLite file. ``DurableAgent`` is re-exported from ``perdure``."""

from ._durable import DurableAgent, PendingDecision, RunInfo, StepInfo
from ._journal import Durability

__all__ = ["Durability", "DurableAgent", "PendingDecision", "RunInfo", "StepInfo"]
