"""``DBOSAgent``: durable runs on DBOS Transact, a thin façade over ``DurableAgentBase`` and ``DBOSBackend``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._agent import Agent
from .._exceptions import UserError
from .._loop import AgentRunResult, Prompt
from ..durable.base import DurableAgentBase, check_name
from ..messages import ModelMessage
from ..models import ModelSettings
from ..usage import UsageLimits
from ._backend import DBOSBackend, in_workflow, launched
from ._names import DEFAULT_QUEUE, workflow_name

__all__ = ["DBOSAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")


def _dbos_registry() -> Any:
    from dbos import _dbos  # DBOS keeps its registry here; there is no public accessor

    return _dbos._get_or_create_dbos_registry()


class DBOSAgent(DurableAgentBase[DepsT, OutputT]):
    """Durable runs of ``agent`` on DBOS Transact: PostgreSQL (many machines) or SQLite.

    Construct it before ``DBOS.launch()`` (it registers the run workflow with DBOS)::

        DBOS(config={"name": "support", "system_database_url": "postgresql://..."})
        dbos_agent = DBOSAgent(agent, deps=make_deps())   # deps for runs this process recovers
        DBOS.launch()                                      # recovery of pending runs starts here
        result = await dbos_agent.run("Refund order 42", run_id="refund-42")

    Each run is a DBOS workflow whose workflow id is the run id: running the same ``run_id`` again returns the
    recorded result; a run whose process died is finished by the next process that launches DBOS. Model
    requests and tool calls are DBOS steps that record their results; nothing recorded runs again.

    Where it differs from ``DurableAgent``, because DBOS does it its own way:

    * Recovery is DBOS's: launching DBOS recovers the pending runs of the process's executor id
      (``DBOSConfig["executor_id"]``, default ``"local"``; give every process its own, stable one, or let DBOS
      Conductor reassign the runs of a machine that is gone). ``resume(run_id)`` awaits the run wherever DBOS
      executes it (``RunWaiting`` if it waits for a decision) and never takes it over from another process;
      ``recover()`` awaits this agent's runs that DBOS is recovering for this executor, and returns their ids.
    * ``wait(run_id)`` waits through decisions: it returns once the run is decided and finished.
    * A decision is delivered when the run takes it: until then ``get_run`` still shows the call pending. A run
      waiting for a decision is a ``PENDING`` workflow to DBOS (it holds a slot of a queue's concurrency).
    * ``deps`` given to ``run()`` serve the execution started by that call; recovered and dequeued executions get
      the ``deps`` (or ``deps_factory``) given here. ``resume``, ``wait`` and ``recover`` execute nothing
      themselves, so their ``deps`` are not used.
    * Inside your own ``@DBOS.workflow``, ``run()`` is a child workflow of yours and waits for it to finish,
      approvals included (raising ``RunWaiting`` would end your workflow). Its run id defaults to one DBOS
      derives from your workflow's, so a recovery of your workflow finds the same run.
    * An execution that DBOS's recovery handed to another process (two processes with one executor id, or a
      recovery of a live executor's runs) stops within ``poll_interval``: its steps in flight are cancelled and
      it records nothing more (DBOS fences its writes).

    Args:
        agent: the agent; it must have a name (or pass ``name``): the workflow is named ``perdure:<name>``.
        name: the name to register under instead of ``agent.name``.
        deps: the deps of runs executed without deps given to ``run()`` (recovered or dequeued runs).
        deps_factory: instead of ``deps``: called with the run id to build each such run's deps.
        step_config: DBOS step options (``StepOptions``) for model requests, e.g. ``{"timeout_seconds": 120}``;
            default ``{"preemptible": True}`` (a cancelled run abandons its in-flight request). Retries are the
            agent's ``retry_config`` (transient errors, inside the step), not DBOS's. Tool calls run once per
            attempt: their exceptions are recorded outcomes, not retried.
        queue: the DBOS queue ``start()`` enqueues on (registered with default limits if it does not exist).
        poll_interval: how often ``run()`` and ``wait()`` poll the database for a run executing elsewhere, and
            how often an execution here checks that it still owns its run.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        name: str | None = None,
        deps: DepsT | None = None,
        deps_factory: Callable[[str], DepsT] | None = None,
        step_config: dict[str, Any] | None = None,
        queue: str = DEFAULT_QUEUE,
        poll_interval: float = 0.2,
    ) -> None:
        if not isinstance(agent, Agent):
            raise UserError(f"DBOSAgent wraps an Agent, not {type(agent).__name__}")
        name = check_name(
            agent,
            name,
            "DBOSAgent",
            "its runs are the DBOS workflow 'perdure:<name>', which a restarted process must find again "
            "(or pass DBOSAgent(agent, name=...))",
        )
        if deps is not None and deps_factory is not None:
            raise UserError("pass deps or deps_factory, not both")
        if step_config is not None and "name" in step_config:
            raise UserError("step_config cannot set 'name': each step is named by its step key")
        if step_config is not None and step_config.get("retries_allowed"):
            raise UserError(
                "step_config cannot set retries_allowed: a model request retries transient errors inside its step, "
                "as the agent's retry_config says (Agent(..., retry_config=RetryConfig(...))), and its failure is "
                "recorded like any result"
            )
        if launched():
            raise UserError(
                f"DBOSAgent({name!r}) was constructed after DBOS.launch(): DBOS recovers only the workflows "
                "registered when it launches. Construct every DBOSAgent first (e.g. at import time), then call "
                "DBOS.launch()"
            )
        self.workflow_name = workflow_name(name)
        if self.workflow_name in _dbos_registry().workflow_info_map:
            raise UserError(
                f"an agent named {name!r} is already registered with DBOS (workflow {self.workflow_name!r}); "
                "two agents cannot share a name, or a recovered run would execute with the wrong one. Give each "
                "agent its own name (Agent(..., name=...) or DBOSAgent(agent, name=...))"
            )
        self.agent = agent
        self.name = name
        self.deps = deps
        self.deps_factory = deps_factory
        self.queue = queue
        self.poll_interval = poll_interval
        self._backend: DBOSBackend = DBOSBackend(
            agent,
            name,
            deps=deps,
            deps_factory=deps_factory,
            model_options={"preemptible": True, **(step_config or {})},
            queue=queue,
            poll_interval=poll_interval,
        )

    def __repr__(self) -> str:
        return f"DBOSAgent({self.name!r})"

    async def run(
        self,
        prompt: Prompt | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run durably to the output, as the DBOS workflow ``run_id``.

        With a ``run_id`` that exists, nothing starts twice: a finished run returns its recorded result, a run in
        progress is awaited. A run that reaches a tool with ``requires_approval=True`` raises ``RunWaiting``
        (the workflow keeps waiting inside DBOS, holding no process); decide with ``approve()``.

        Inside your own ``@DBOS.workflow`` the run is a child workflow of yours, and this waits for it to finish,
        approvals included.
        """
        if not in_workflow():
            return await super().run(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        # The id is checked, and the input built, as for any run; DBOS derives the id when none is given.
        run = self._run_input(prompt, run_id or "derived", message_history, model, usage_limits, model_settings)
        return await self._backend.run_child(run, run_id, deps)
