"""``TemporalAgent``: durable runs of an agent on Temporal."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.client import Client

from .._agent import Agent
from .._engine import new_run_id
from .._exceptions import UserError
from .._loop import AgentRunResult, Prompt, split_prompt
from ..durable.base import DurableAgentBase, check_name, check_run_id
from ..messages import ModelMessage
from ..models import Model, ModelSettings
from ..runs import RunInfo
from ..usage import UsageLimits
from ._activities import ConversationCache, make_activities
from ._admin import TemporalAdmin
from ._backend import TemporalBackend
from ._options import ActivityOptions, AgentConfig, check_mapping, check_options
from ._wire import WorkflowInput, encode_deps
from ._workflow import AgentRunInWorkflow, Runs, make_workflow_class

__all__ = ["TemporalAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

DEFAULT_TASK_QUEUE = "perdure"


class TemporalAgent(DurableAgentBase[DepsT, OutputT]):
    """Durable runs of ``agent`` on Temporal: the loop is workflow code, every model request and tool call an
    activity, an approval a workflow update the run waits for server-side.

    Without workflow code: workers register the agent with ``PerdurePlugin``, callers run it by id::

        temporal_agent = TemporalAgent(agent, client="localhost:7233")    # or a connected Client
        # a worker process:
        client = await Client.connect("localhost:7233", plugins=[PerdurePlugin(temporal_agent)])
        async with Worker(client, task_queue="perdure"):       # the plugin adds the workflow and activities
            ...
        # any process:
        result = await temporal_agent.run("Refund order 42", run_id="refund-42")

    The built-in workflow's id is the run id: running an id again returns the recorded result of a finished
    run, or waits for one in progress. A run that needs an approval raises ``RunWaiting`` while its workflow
    waits server-side; ``approve(run_id, tool_call_id)`` from any process lets it go on.

    Inside your own workflow (the worker still needs ``PerdurePlugin(temporal_agent)`` for the activities)::

        @workflow.defn
        class Ticket:
            @workflow.run
            async def run(self, question: str) -> str:
                result = await temporal_agent.run(question)   # the first run's id is the workflow id
                return result.output

    The methods every durable agent has, as Temporal does them:

    - ``run``: starts the run's workflow (or attaches to it) and waits for its result; inside a workflow, runs
      the agent as part of that workflow. ``start`` starts it and returns at once (deps: ``start_workflow``).
    - ``resume``: waits for the run's outcome (workers execute it); ``RunWaiting`` while it waits for a decision.
      ``deps`` are ignored: they travel in the workflow's input, given when the run started.
    - ``wait``: waits until the run has ended, through any waits for decisions (``timeout`` in seconds).
    - ``recover``: Temporal's workers take over the runs of dead workers by themselves; ``recover`` waits until
      this agent's running runs have ended or wait for a decision (a worker must be running) and returns their ids.
    - ``approve``/``deny``: a workflow update, applied by a worker; ``cancel``: the workflow is cancelled.
    - ``get_run``/``list_runs``: the run's workflow query (answered by a worker), Temporal's visibility store.

    Runs inside your own workflow whose run id is not the workflow id: ``get_run_in_workflow`` and
    ``approve_in_workflow``.

    The agent's instructions functions and output validators run as workflow code: keep them deterministic.
    Recovery after a worker dies takes about the activity's heartbeat timeout (10 s by default; see
    ``ActivityOptions``) plus the workers' ``sticky_queue_schedule_to_start_timeout`` (Temporal's default 10 s).
    A worker that stalls past an activity's heartbeat timeout (a frozen VM, a tool blocking the event loop) loses
    the step: Temporal runs it again on another worker, keeps that result and rejects the stalled worker's.

    Args:
        agent: the agent; it needs a ``name`` (workflow and activity names are made from it).
        client: a Temporal ``Client``, or the server's address (``"localhost:7233"``, connected on first use).
            Without it, set ``temporal_agent.client`` before calling it outside a workflow (the client of a
            worker is made with ``PerdurePlugin(temporal_agent)``, after the agent).
        namespace: the namespace of a client connected from an address.
        task_queue: the task queue of runs started here.
        activity_options: options of every activity of this agent (``ActivityOptions``).
        model_activity_options: options of model requests: one ``ActivityOptions``, or a mapping by model name
            (the run's ``model=`` string, or the agent's model name).
        tool_activity_options: options by tool name.
        workflow_task_timeout: the built-in workflow's task timeout (Temporal's default: 10 s); a worker that
            dies in the middle of workflow code is noticed after it.
        max_history_events: continue as new once the history has this many events (Temporal's suggestion
            always applies too).
        fail_on_nondeterminism: a run whose history no longer replays with this code fails with
            ``NonDeterminismError`` (perdure's semantics). ``False`` keeps Temporal's default: the workflow task
            is retried until workers run code that replays it (roll back or fix forward); the run does not fail.
        conversation_cache_size: how many runs' conversations a worker keeps, to ship only new messages.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        client: Client | str | None = None,
        namespace: str = "default",
        task_queue: str = DEFAULT_TASK_QUEUE,
        activity_options: ActivityOptions | None = None,
        model_activity_options: ActivityOptions | Mapping[str, ActivityOptions] | None = None,
        tool_activity_options: Mapping[str, ActivityOptions] | None = None,
        workflow_task_timeout: timedelta | None = None,
        max_history_events: int | None = None,
        fail_on_nondeterminism: bool = True,
        conversation_cache_size: int = 256,
    ) -> None:
        self.name = check_name(agent, None, "TemporalAgent", "its workflow and activities are named after it")
        self.agent = agent
        if max_history_events is not None and max_history_events < 10:
            raise UserError("max_history_events must be at least 10")
        if client is not None and not isinstance(client, Client | str):
            raise UserError(f"client must be a temporalio Client or an address, not {type(client).__name__}")
        if activity_options is not None:
            check_options(activity_options, "activity_options")
        model_all: ActivityOptions | None = None
        model_by_name: dict[str, ActivityOptions] = {}
        if isinstance(model_activity_options, ActivityOptions):
            check_options(model_activity_options, "model_activity_options")
            model_all = model_activity_options
        else:
            model_by_name = check_mapping(model_activity_options, "model_activity_options")
        tool_by_name = check_mapping(tool_activity_options, "tool_activity_options")
        unknown = sorted(set(tool_by_name) - set(agent._tools))
        if unknown:
            raise UserError(
                f"tool_activity_options names tools the agent {self.name!r} does not have: {', '.join(unknown)}"
            )
        self.config = AgentConfig(
            agent=agent,
            name=self.name,
            activity_options=activity_options,
            model_all=model_all,
            model_by_name=model_by_name,
            tool_by_name=tool_by_name,
            max_history_events=max_history_events,
            fail_on_nondeterminism=fail_on_nondeterminism,
        )
        self.task_queue = task_queue
        self.namespace = namespace
        self.workflow_task_timeout = workflow_task_timeout
        self.max_history_events = max_history_events
        self.fail_on_nondeterminism = fail_on_nondeterminism
        self.workflow_name = self.config.workflow_name
        self.model_activity_name = self.config.model_activity_name
        self.tool_activity_name = self.config.tool_activity_name
        self.conversations = ConversationCache(conversation_cache_size)
        """This worker's conversations of recent runs (hits and misses: how often a request shipped only news)."""
        self._target: Client | str | None = client
        self._connected: Client | None = client if isinstance(client, Client) else None
        self._admin = TemporalAdmin(self._connect, namespace, agent=self.name)
        self._backend: TemporalBackend = TemporalBackend(
            self.config, self._admin, task_queue=task_queue, workflow_task_timeout=workflow_task_timeout
        )
        self._models: dict[str | None, Model] = {}
        self._workflow_class: type | None = None
        self._activities: list[Callable[..., Any]] | None = None

    def __repr__(self) -> str:
        return f"TemporalAgent({self.name!r}, task_queue={self.task_queue!r})"

    # --- the client -------------------------------------------------------------------------------------

    @property
    def client(self) -> Client | None:
        """The client runs are started and inspected with (None until connected or set)."""
        return self._connected

    @client.setter
    def client(self, client: Client) -> None:
        if not isinstance(client, Client):
            raise UserError(f"client must be a temporalio Client, not {type(client).__name__}")
        self._target = self._connected = client

    async def _connect(self) -> Client:
        if workflow.in_workflow():
            raise UserError(
                "inside a workflow, only TemporalAgent.run() works (it executes as part of that workflow); "
                "start, inspect and decide on runs from a client, outside workflow code"
            )
        if self._connected is None:
            if self._target is None:
                raise UserError(
                    "TemporalAgent outside a workflow needs a Temporal client: pass "
                    "TemporalAgent(agent, client=...) (a Client, or an address such as 'localhost:7233'), or set "
                    "temporal_agent.client = await Client.connect(...); or call run() inside a @workflow.defn. "
                    "It never runs the agent without durability (that is agent.run())."
                )
            assert isinstance(self._target, str)
            try:
                self._connected = await Client.connect(self._target, namespace=self.namespace)
            except Exception as e:
                raise UserError(f"cannot reach Temporal at {self._target}: {e}") from e
        return self._connected

    # --- what workers register --------------------------------------------------------------------------

    @property
    def workflow_class(self) -> type:
        """The built-in workflow (type ``perdure:<agent name>``); ``PerdurePlugin`` registers it."""
        if self._workflow_class is None:
            self._workflow_class = make_workflow_class(self.config)
        return self._workflow_class

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """The model-request and tool-call activities; ``PerdurePlugin`` registers them."""
        if self._activities is None:
            self._activities = make_activities(self.config, self.conversations, self._resolve_model)
        return self._activities

    def _resolve_model(self, model: str | None) -> Model:
        resolved = self._models.get(model)
        if resolved is None:
            resolved = self.agent.resolve_model(model)
            self._models[model] = resolved
        return resolved

    # --- running ----------------------------------------------------------------------------------------

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
        """Run durably to the output.

        Outside a workflow: starts the built-in workflow with id ``run_id`` (or attaches to it) and waits for its
        result; a finished run returns its recorded result, nothing executes again. A run that waits for an
        approval raises ``RunWaiting`` (the workflow keeps waiting, server-side).

        Inside a workflow: runs the agent as part of it and returns when the run ends (waiting for approvals
        as long as it takes).
        """
        if workflow.in_workflow():
            return await self._run_in_workflow(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        run = self._run_input(prompt, run_id or new_run_id(), message_history, model, usage_limits, model_settings)
        created = await self._backend.submit(run, self._meta(run.run_id), deps=deps)
        result: AgentRunResult[OutputT] = await self._backend.resume(run.run_id, deps, fresh=created)
        return result

    async def start_workflow(
        self,
        prompt: Prompt | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        task_queue: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """``start`` with what only Temporal needs at start: the ``deps`` the workers' tools get (they travel in
        the workflow's input) and another ``task_queue`` than the agent's. Returns the run id at once."""
        run = self._run_input(prompt, run_id or new_run_id(), message_history, model, usage_limits, model_settings)
        await self._backend.submit(run, self._meta(run.run_id), deps=deps, task_queue=task_queue)
        return run.run_id

    async def _run_in_workflow(
        self,
        prompt: Prompt | None,
        *,
        run_id: str | None,
        deps: Any,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
    ) -> AgentRunResult[OutputT]:
        runs = Runs.current()
        text, content = split_prompt(prompt)
        inp = WorkflowInput(
            agent=self.name,
            run_id=check_run_id(run_id) if run_id is not None else runs.next_run_id(),
            prompt=text,
            content=content,
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model=model,
            deps=encode_deps(self.agent, deps),
            fingerprint=self._fingerprint(),
        )
        run = AgentRunInWorkflow(self.config, inp, runs, builtin=False)
        result: AgentRunResult[OutputT] = await run.run()
        return result

    # --- runs inside your own workflow ------------------------------------------------------------------

    async def get_run_in_workflow(self, workflow_id: str, run_id: str) -> RunInfo:
        """A run of this agent inside your workflow ``workflow_id`` (its first run's id is the workflow id, the
        next ones ``<workflow id>/2``...: see ``AgentRunResult.run_id``)."""
        info = await self._admin.get_run(check_run_id(run_id), workflow_id=workflow_id)
        if info is None:
            raise UserError(f"no workflow {workflow_id!r} on this Temporal namespace")
        return info

    async def approve_in_workflow(
        self, workflow_id: str, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None
    ) -> None:
        """Decide on a waiting call of a run inside your workflow ``workflow_id``."""
        await self._admin.decide(
            check_run_id(run_id), tool_call_id, approved=approved, note=note, workflow_id=workflow_id
        )
