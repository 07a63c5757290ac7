"""Durable runs on Prefect: ``PrefectAgent(agent)`` runs each agent run as a Prefect flow run.

Every model request and tool call is a Prefect task whose result is persisted and cached under (run id, step
key): a flow run executed again after a crash replays what it recorded and executes only the rest. Approvals
suspend the flow run (no process waits) until decisions arrive as its run input. Needs the ``prefect`` extra::

    pip install "perdure[prefect]"
"""

from .._exceptions import MissingExtra

try:
    import prefect  # noqa: F401  # the extra's presence is checked here, once, with the install command
except ImportError as e:  # pragma: no cover - tests/prefect checks the message in a subprocess
    if (e.name or "prefect").split(".")[0] != "prefect":
        raise
    raise MissingExtra("prefect", "prefect") from e

from ._admin import PrefectAdmin, admin
from ._agent import PrefectAgent
from ._config import TaskConfig

__all__ = ["PrefectAdmin", "PrefectAgent", "TaskConfig", "admin"]
