"""The embedded engine: durable runs on one SQLite file. ``DurableAgent`` is re-exported from ``perdure``."""

from ..runs import PendingDecision, RunInfo, StepInfo
from ._durable import DurableAgent
from ._journal import Durability

__all__ = ["Durability", "DurableAgent", "PendingDecision", "RunInfo", "StepInfo"]
