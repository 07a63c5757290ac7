"""Testing agents offline: models that need no network, and the conformance kit every engine passes.

* ``TestModel`` and ``FunctionModel`` — models for unit tests of your own agents.
* ``MemoryAgent`` — durable runs kept in memory: the reference engine, for tests that need no journal file.
* ``perdure.testing.conformance`` — scenario agents, crash points and a subprocess harness: the one suite that
  proves an engine gives perdure's durable semantics (DESIGN section 2).
"""

from ..durable.memory import MemoryAgent, MemoryRuns
from ..models.function import AgentInfo, DeltaToolCall, FunctionModel
from ..models.test import TestModel

__all__ = ["AgentInfo", "DeltaToolCall", "FunctionModel", "MemoryAgent", "MemoryRuns", "TestModel"]
