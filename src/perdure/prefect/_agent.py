"""``PrefectAgent``: each run is a Prefect flow run; each model request and tool call a task with a cached result.

How a run maps onto Prefect:

* the agent's **flow** (named after the agent) has one **deployment** (``perdure``, no work pool): Prefect only
  suspends flow runs of a deployment, and suspension is how a run waits for a human without holding a process;
* a run is **one flow run**, named by the run id and created with the run id as its idempotency key: starting a
  run id twice never starts two executions. Its parameters hold the run's input (accepted = durable);
* each model request and tool call is a **task** whose result (the tagged ``ModelResponse`` / ``ToolOutcome``
  JSON, with the step's ``describe()``) is persisted and **cached under (run id, step key)**. Executing the
  same flow run again after a crash replays recorded steps as cache hits and executes only the rest;
* an approval **suspends** the flow run with a run input (one field per waiting call); ``approve`` resumes it
  with the decisions once every waiting call is decided, and ``resume`` (or ``serve``) executes it again;
* ``cancel`` moves the flow run to ``Cancelling``; the executing process stops at its next step boundary and
  the run ends ``Cancelled``.

Who owns an executing flow run is recorded as its ``infrastructure_pid`` (``host:pid:start-time``): a run whose
owner died on this machine is resumed at once. A run owned by a process on another machine is resumed once
Prefect marks it ``Crashed`` (Prefect's flow-run heartbeats and zombie detection do that). Of several processes
resuming one run at the same moment, one executes it (``_backend``).

Run Prefect's server on PostgreSQL. On SQLite it answers HTTP 503 whenever a request that reads before it
writes (creating a flow run does) overlaps another write, such as the recording of the previous run's task
runs; Prefect's client retries after 2, 4, 8... seconds (``PREFECT_CLIENT_MAX_RETRIES``, default 5), so runs
succeed but start seconds late under any concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeVar

from .._agent import Agent
from ..durable.base import DurableAgentBase, check_name
from ._backend import PrefectBackend
from ._config import TaskConfig
from ._store import TaskSet

__all__ = ["PrefectAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")


class PrefectAgent(DurableAgentBase[DepsT, OutputT]):
    """Durable runs of ``agent`` as Prefect flow runs, with every model request and tool call a cached task.

    ::

        prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=Path("/shared/results")))
        result = await prefect_agent.run("Refund order 42", run_id="refund-42")

    The process needs a Prefect server (``PREFECT_API_URL``) and result storage that every process resuming a
    run can read. Run the same ``run_id`` again and a finished run returns its recorded result; a run whose
    process died is resumed where it stopped: recorded steps are cache hits, the rest executes. Works inside
    your own ``@flow`` too (the agent's run is then its own flow run, linked to yours by a tag).

    The methods are those of every durable agent. On Prefect: ``start`` creates a scheduled flow run that
    ``serve()`` (or ``recover()``, ``resume()``) executes; ``approve`` resumes the suspended flow run once every call
    it waits for is decided, and the run then continues where ``resume``/``serve`` executes it; ``wait`` polls the
    server every ``poll_interval``. Without ``PREFECT_API_URL`` Prefect starts a temporary server per process, which
    does not survive a crash: a warning says so, and a killed process's leftover server is reported, not waited on.

    Args:
        agent: the agent; it must have a ``name`` (the flow is named after it, unless ``name`` is given).
        name: the Prefect flow's name.
        task_config: Prefect options for every step's task (retries, timeouts, result storage).
        model_task_config: options for model requests, over ``task_config``.
        tool_task_config: options per tool name, over ``task_config``.
        poll_interval: how soon an executing run notices a cancellation, or another process's claim: its process
            polls the server this often (abandoning an in-flight model request), and a step boundary reads the
            run's state itself when its last read is older than this.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        name: str | None = None,
        task_config: TaskConfig | None = None,
        model_task_config: TaskConfig | None = None,
        tool_task_config: Mapping[str, TaskConfig] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.name = check_name(
            agent,
            name,
            "PrefectAgent",
            "its flow, and the runs in Prefect, are named after it (or PrefectAgent(agent, name=...))",
        )
        self.agent = agent
        self.poll_interval = poll_interval
        self.tasks = TaskSet(task_config or TaskConfig(), model_task_config or TaskConfig(), tool_task_config or {})
        self._backend: PrefectBackend = PrefectBackend(agent, self.name, tasks=self.tasks, poll_interval=poll_interval)

    def __repr__(self) -> str:
        return f"PrefectAgent({self.name!r})"

    async def serve(
        self,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        stop: asyncio.Event | None = None,
    ) -> None:
        """Be a worker for this agent: execute started, decided and orphaned runs until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self._backend.recover(deps)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            except TimeoutError:
                pass


# Read by the command line's Prefect backend until it is rebuilt on ``PrefectAdmin`` (perdure.prefect.admin).
from ._runs import STATE_TYPES as _STATE_TYPES  # noqa: E402
from ._runs import orphaned as _orphaned  # noqa: E402
from ._runs import owner as _owner  # noqa: E402
from ._runs import status as _status  # noqa: E402
from ._runs import timestamp as _timestamp  # noqa: E402

__all__ += ["_STATE_TYPES", "_orphaned", "_owner", "_status", "_timestamp"]
