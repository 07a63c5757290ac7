"""Testing agents offline: models that need no network, and the conformance kit every engine passes.

* ``TestModel`` and ``FunctionModel`` — models for unit tests of your own agents.
* ``perdure.testing.conformance`` — scenario agents, crash points and a subprocess harness: the one suite that
  proves an engine gives perdure's durable semantics (DESIGN section 2).
"""

from ..models.function import AgentInfo, DeltaToolCall, FunctionModel
from ..models.test import TestModel

__all__ = ["AgentInfo", "DeltaToolCall", "FunctionModel", "TestModel"]
