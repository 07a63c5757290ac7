"""Durable runs on Temporal: the agent loop as workflow code, each model request and tool call an activity.

::

    from perdure.temporal import PerdurePlugin, TemporalAgent

    temporal_agent = TemporalAgent(agent, client="localhost:7233")
    client = await Client.connect("localhost:7233", plugins=[PerdurePlugin(temporal_agent)])
    async with Worker(client, task_queue="perdure"):                 # usually in a worker process
        result = await temporal_agent.run("Refund order 42", run_id="refund-42")

``admin(address, namespace)`` operates the runs of every agent with no agent at hand (what the CLI uses).

Needs the ``temporal`` extra: ``pip install "perdure[temporal]"``.
"""

from .._exceptions import MissingExtra

try:
    import temporalio  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess by tests/temporal/test_api.py
    raise MissingExtra("temporal", "temporalio") from e

from ._admin import TemporalAdmin, admin
from ._agent import TemporalAgent
from ._options import ActivityOptions
from ._plugin import PerdurePlugin

__all__ = ["ActivityOptions", "PerdurePlugin", "TemporalAdmin", "TemporalAgent", "admin"]
