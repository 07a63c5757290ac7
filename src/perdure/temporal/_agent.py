"""``TemporalAgent``: durable runs of an agent on Temporal."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.service import RPCError, RPCStatusCode

from .._agent import Agent
from .._engine import new_run_id
from .._exceptions import (
    AgentRunError,
    NonDeterminismError,
    RunCancelled,
    RunWaiting,
    UserError,
    error_from_record,
)
from .._loop import AgentRunResult
from .._ops import step_kind
from ..messages import ModelMessage
from ..models import Model, ModelSettings
from ..observability._spans import accept_run, run_started
from ..runs import PendingDecision, RunInfo, StepInfo
from ..usage import Usage, UsageLimits
from ._activities import ConversationCache, make_activities
from ._options import (
    ActivityOptions,
    check_mapping,
    check_options,
    model_defaults,
    tool_defaults,
)
from ._wire import (
    QUERY_DEADLINES,
    Approval,
    PendingRecord,
    RunOutput,
    StepRecord,
    WorkflowInput,
    decode_output,
    encode_deps,
    query,
)
from ._workflow import (
    APPROVE_UPDATE,
    ENGINE,
    MEMO_AGENT,
    MEMO_FINGERPRINT,
    MEMO_PENDING,
    MEMO_PROMPT,
    STATUS_QUERY,
    AgentRunInWorkflow,
    Runs,
    make_workflow_class,
)

__all__ = ["TemporalAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

DEFAULT_TASK_QUEUE = "perdure"
_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}
_VISIBILITY_STATUS = {
    "running": ["Running"],
    "waiting": ["Running"],
    "completed": ["Completed"],
    "failed": ["Failed", "Terminated", "TimedOut"],
    "cancelled": ["Canceled"],
}


class TemporalAgent(Generic[DepsT, OutputT]):
    """Durable runs of ``agent`` on Temporal: the loop is workflow code, every model request and tool call an
    activity, an approval a workflow update the run waits for server-side.

    Without workflow code: workers register the agent with ``PerdurePlugin``, callers run it by id::

        temporal_agent = TemporalAgent(agent)
        client = await Client.connect("localhost:7233", plugins=[PerdurePlugin(temporal_agent)])
        async with Worker(client, task_queue="perdure"):       # the plugin adds the workflow and activities
            result = await temporal_agent.run("Refund order 42", client=client, run_id="refund-42")

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

    The agent's instructions functions and output validators run as workflow code: keep them deterministic.
    Recovery after a worker dies takes about the activity's heartbeat timeout (10 s by default; see
    ``ActivityOptions``) plus the workers' ``sticky_queue_schedule_to_start_timeout`` (Temporal's default 10 s).

    Args:
        agent: the agent; it needs a ``name`` (workflow and activity names are made from it).
        task_queue: the default task queue of runs started here.
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
        task_queue: str = DEFAULT_TASK_QUEUE,
        activity_options: ActivityOptions | None = None,
        model_activity_options: ActivityOptions | Mapping[str, ActivityOptions] | None = None,
        tool_activity_options: Mapping[str, ActivityOptions] | None = None,
        workflow_task_timeout: timedelta | None = None,
        max_history_events: int | None = None,
        fail_on_nondeterminism: bool = True,
        conversation_cache_size: int = 256,
    ) -> None:
        if not isinstance(agent, Agent):
            raise UserError(f"TemporalAgent wraps an Agent, not {type(agent).__name__}")
        if not agent.name:
            raise UserError(
                "a Temporal agent needs a name: its workflow and activities are named after it. "
                "Pass Agent(..., name='support')"
            )
        if max_history_events is not None and max_history_events < 10:
            raise UserError("max_history_events must be at least 10")
        self.agent = agent
        self.name: str = agent.name
        self.task_queue = task_queue
        self.workflow_name = f"perdure:{self.name}"
        self.model_activity_name = f"perdure:{self.name}:model_request"
        self.tool_activity_name = f"perdure:{self.name}:tool_call"
        self.workflow_task_timeout = workflow_task_timeout
        self.max_history_events = max_history_events
        self.fail_on_nondeterminism = fail_on_nondeterminism
        if activity_options is not None:
            check_options(activity_options, "activity_options")
        self._activity_options = activity_options
        if isinstance(model_activity_options, ActivityOptions):
            check_options(model_activity_options, "model_activity_options")
            self._model_all: ActivityOptions | None = model_activity_options
            self._model_by_name: dict[str, ActivityOptions] = {}
        else:
            self._model_all = None
            self._model_by_name = check_mapping(model_activity_options, "model_activity_options")
        self._tool_by_name = check_mapping(tool_activity_options, "tool_activity_options")
        unknown = sorted(set(self._tool_by_name) - set(agent._tools))
        if unknown:
            raise UserError(
                f"tool_activity_options names tools the agent {self.name!r} does not have: {', '.join(unknown)}"
            )
        self._conversations = ConversationCache(conversation_cache_size)
        self._models: dict[str | None, Model] = {}
        self._workflow_class: type | None = None
        self._activities: list[Callable[..., Any]] | None = None

    def __repr__(self) -> str:
        return f"TemporalAgent({self.name!r}, task_queue={self.task_queue!r})"

    # --- what workers register --------------------------------------------------------------------------

    @property
    def workflow_class(self) -> type:
        """The built-in workflow (type ``perdure:<agent name>``); ``PerdurePlugin`` registers it."""
        if self._workflow_class is None:
            self._workflow_class = make_workflow_class(self)
        return self._workflow_class

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """The model-request and tool-call activities; ``PerdurePlugin`` registers them."""
        if self._activities is None:
            self._activities = make_activities(self)
        return self._activities

    # --- options and models (used by workflow and activity code) ---------------------------------------

    def _model_key(self, model: str | None) -> str:
        return model if model is not None else (self.agent.model_name or "")

    def _model_options(self, model: str | None) -> ActivityOptions:
        options = model_defaults(self.agent.retry_config).merged(self._activity_options).merged(self._model_all)
        return options.merged(self._model_by_name.get(self._model_key(model)))

    def _tool_options(self, tool_name: str) -> ActivityOptions:
        options = tool_defaults().merged(self._activity_options)
        return options.merged(self._tool_by_name.get(tool_name))

    def _model_name(self, model: str | None) -> str:
        """The model's name without constructing it (workflow code must not build provider clients)."""
        if model is None and isinstance(self.agent.model, Model):
            return self.agent.model.model_name
        spec = model if model is not None else self.agent.model
        if spec is None:
            raise UserError("no model: pass one to Agent(model=...) or to run(..., model=...)")
        provider, _, name = str(spec).partition(":")
        return name or provider

    def _resolve_model(self, model: str | None) -> Model:
        resolved = self._models.get(model)
        if resolved is None:
            resolved = self.agent.resolve_model(model)
            self._models[model] = resolved
        return resolved

    # --- running ----------------------------------------------------------------------------------------

    async def run(
        self,
        prompt: str | None = None,
        *,
        client: Client | None = None,
        run_id: str | None = None,
        task_queue: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run durably to the output.

        Outside a workflow (``client=`` given): starts the built-in workflow with id ``run_id`` (or attaches to
        it) and waits for its result; a finished run returns its recorded result, nothing executes again. A run
        that waits for an approval raises ``RunWaiting`` (the workflow keeps waiting, server-side).

        Inside a workflow: runs the agent as part of it and returns when the run ends (waiting for approvals
        as long as it takes).
        """
        if workflow.in_workflow():
            if client is not None or task_queue is not None:
                raise UserError(
                    "inside a workflow, TemporalAgent.run() executes as part of that workflow: don't pass "
                    "client= or task_queue= (configure activity task queues with ActivityOptions)"
                )
            return await self._run_in_workflow(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        client = self._client(client, "run")
        run_id = await self.start(
            prompt,
            client=client,
            run_id=run_id,
            task_queue=task_queue,
            deps=deps,
            message_history=message_history,
            model=model,
            usage_limits=usage_limits,
            model_settings=model_settings,
        )
        return await self._outcome(client, run_id)

    async def start(
        self,
        prompt: str | None = None,
        *,
        client: Client | None = None,
        run_id: str | None = None,
        task_queue: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """Start the run's workflow (accepted = durable) and return its run id at once; workers execute it.

        An id that exists already is not started again: its run continues, or keeps its recorded result.
        """
        if workflow.in_workflow():
            raise UserError("start() starts a workflow from a client; inside a workflow, await run() instead")
        client = self._client(client, "start")
        run_id = run_id or new_run_id()
        if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise UserError(f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}")
        if model is not None and not isinstance(model, str):
            raise UserError("a durable run records its model by name: pass a model string, e.g. 'openai:gpt-4.1'")
        self._model_name(model)  # no model at all: say so now, not in a worker
        acceptance = accept_run(agent_name=self.name, run_id=run_id, engine=ENGINE)  # the run's trace
        inp = WorkflowInput(
            agent=self.name,
            run_id=run_id,
            prompt=prompt,
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model=model,
            deps=encode_deps(self.agent, deps),
            fingerprint=self.agent.fingerprint(),
            trace_context=acceptance.trace_context,
        )
        memo: dict[str, Any] = {MEMO_AGENT: self.name, MEMO_FINGERPRINT: inp.fingerprint}
        if prompt is not None:
            memo[MEMO_PROMPT] = prompt[:200]
        try:
            await client.start_workflow(
                self.workflow_name,
                inp.dump(),
                id=run_id,
                task_queue=task_queue or self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                task_timeout=self.workflow_task_timeout,
                memo=memo,
            )
        except WorkflowAlreadyStartedError:
            await self._describe(client, run_id)  # it must be a run of this agent
        else:  # accepted: a duplicate submission reports nothing
            acceptance.commit()
            run_started(agent_name=self.name, engine=ENGINE)
        return run_id

    async def resume(self, run_id: str, *, client: Client | None = None) -> AgentRunResult[OutputT]:
        """Wait for a run (executed by the workers) to end; its result, or its error.

        Raises ``RunWaiting`` while it waits for a decision. A finished run returns its recorded result.
        """
        client = self._client(client, "resume")
        await self._describe(client, run_id)
        return await self._outcome(client, run_id)

    wait = resume

    async def _run_in_workflow(
        self,
        prompt: str | None,
        *,
        run_id: str | None,
        deps: Any,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
    ) -> AgentRunResult[OutputT]:
        runs = Runs.current()
        inp = WorkflowInput(
            agent=self.name,
            run_id=run_id or runs.next_run_id(),
            prompt=prompt,
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model=model,
            deps=encode_deps(self.agent, deps),
            fingerprint=self.agent.fingerprint(),
        )
        run = AgentRunInWorkflow(self, inp, runs, builtin=False)
        result: AgentRunResult[OutputT] = await run.run()
        return result

    async def _outcome(self, client: Client, run_id: str) -> AgentRunResult[OutputT]:
        handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(run_id)
        result_task = asyncio.ensure_future(handle.result())
        delay = 0.02
        try:
            while True:
                done, _ = await asyncio.wait({result_task}, timeout=delay)
                if done:
                    raw = result_task.result()
                    break
                pending = await self._memo_pending(handle, run_id)
                if pending:
                    raise RunWaiting(run_id, pending)
                delay = min(delay * 1.5, 1.0)
        except WorkflowFailureError as e:
            raise _run_error(e, run_id) from None
        finally:
            result_task.cancel()
        out = RunOutput.model_validate(raw)
        output = decode_output(self.agent, out.output, out.output_type)
        return AgentRunResult(output, run_id, out.messages, out.new_from, out.usage)

    async def _memo_pending(self, handle: WorkflowHandle[Any, Any], run_id: str) -> list[dict[str, Any]]:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return []
        memo = await desc.memo()
        return [p for p in memo.get(MEMO_PENDING) or [] if p.get("run_id") == run_id]

    # --- decisions and cancellation -----------------------------------------------------------------------

    async def approve(
        self,
        run_id: str,
        tool_call_id: str,
        *,
        approved: bool = True,
        note: str | None = None,
        client: Client | None = None,
        workflow_id: str | None = None,
    ) -> None:
        """Decide on a waiting call, from any process: a workflow update, checked against the pending calls.

        ``workflow_id`` is only needed for a run inside your own workflow whose run id is not the workflow id.
        """
        client = self._client(client, "approve")
        await approve_run(
            client,
            run_id,
            tool_call_id,
            approved=approved,
            note=note,
            workflow_id=workflow_id,
            workflow_name=self.workflow_name,
        )

    async def cancel(self, run_id: str, *, client: Client | None = None) -> None:
        """Cancel a run from any process: its workflow is cancelled, an in-flight step abandoned (``cancelled``)."""
        client = self._client(client, "cancel")
        await cancel_run(client, run_id, workflow_name=self.workflow_name)

    # --- inspection -------------------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, client: Client | None = None, workflow_id: str | None = None) -> RunInfo:
        """The run's status, steps, usage, output or error and pending decisions (a workflow query).

        ``workflow_id``: the workflow of a run inside your own workflow (its run id by default).
        """
        client = self._client(client, "get_run")
        return await run_info(client, run_id, workflow_id=workflow_id, workflow_name=self.workflow_name)

    async def list_runs(
        self, *, client: Client | None = None, status: str | Sequence[str] | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """This agent's runs, newest first, from Temporal's visibility store (status, times, pending)."""
        client = self._client(client, "list_runs")
        return await list_run_infos(client, status=status, limit=limit, workflow_name=self.workflow_name)

    # --- helpers ----------------------------------------------------------------------------------------

    def _client(self, client: Client | None, method: str) -> Client:
        if client is None:
            raise UserError(
                f"TemporalAgent.{method}() outside a workflow needs a Temporal client: pass "
                "client=await Client.connect(address, plugins=[PerdurePlugin(temporal_agent)]); or call run() "
                "inside a @workflow.defn. It never runs the agent without durability (that is agent.run())."
            )
        return client

    async def _describe(self, client: Client, run_id: str, *, own: bool = True) -> Any:
        return await _describe(client, run_id, self.workflow_name, any_type=not own)


# --- runs by client calls alone (no agent: what the ``perdure`` CLI uses) ------------------------------------

WORKFLOW_PREFIX = "perdure:"
# The CLI has no worker: a query no worker answers falls back to what the server knows, after this long.
CLI_QUERY_DEADLINES = (1.0, 3.0)


async def _describe(client: Client, run_id: str, workflow_name: str | None, *, any_type: bool = False) -> Any:
    """The run's workflow; ``workflow_name``: it must be of that type (None: any perdure agent's; ``any_type``:
    any workflow at all, e.g. the user's own workflow a run executes in)."""
    try:
        desc = await client.get_workflow_handle(run_id).describe()
    except RPCError as e:
        raise _rpc_error(e, run_id) from None
    if any_type:
        return desc
    if workflow_name is not None and desc.workflow_type != workflow_name:
        agent = workflow_name[len(WORKFLOW_PREFIX) :]
        raise UserError(
            f"run {run_id!r} is a {desc.workflow_type!r} workflow, not a run of agent {agent!r} ({workflow_name!r})"
        )
    if workflow_name is None and not str(desc.workflow_type).startswith(WORKFLOW_PREFIX):
        raise UserError(f"run {run_id!r} is a {desc.workflow_type!r} workflow, not a perdure agent's run")
    return desc


async def approve_run(
    client: Client,
    run_id: str,
    tool_call_id: str,
    *,
    approved: bool = True,
    note: str | None = None,
    workflow_id: str | None = None,
    workflow_name: str | None = None,
    timeout: float | None = None,
) -> None:
    """``TemporalAgent.approve`` by client calls alone: the ``perdure.approve`` update (a worker applies it).

    ``timeout``: give up after this many seconds if no worker takes the update (None: wait).
    """
    handle = client.get_workflow_handle(workflow_id or run_id)
    approval = Approval(run_id=run_id, tool_call_id=tool_call_id, approved=approved, note=note)
    try:
        await handle.execute_update(
            APPROVE_UPDATE, approval.dump(), rpc_timeout=timedelta(seconds=timeout) if timeout else None
        )
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        raise UserError(getattr(cause, "message", None) or str(cause or e)) from None
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:  # no such workflow, or it has finished
            desc = await _describe(client, workflow_id or run_id, workflow_name, any_type=workflow_id is not None)
            status = _STATUS.get(desc.status, "finished")
            raise UserError(
                f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision (status {status})"
            ) from None
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        within = f" within {timeout:g}s" if timeout else ""
        raise UserError(
            f"no worker applied the decision on run {run_id!r}{within} (the run's workflow code "
            "applies it): is a worker of its agent running? Temporal may still deliver it to the next worker "
            "that picks the run up; `perdure runs show` tells"
        ) from None


async def cancel_run(client: Client, run_id: str, *, workflow_name: str | None = None) -> None:
    """``TemporalAgent.cancel`` by client calls alone: the workflow is cancelled (a no-op once it ended)."""
    desc = await _describe(client, run_id, workflow_name)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return
    try:
        await client.get_workflow_handle(run_id).cancel()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:  # it finished meanwhile
            raise


async def run_info(
    client: Client,
    run_id: str,
    *,
    workflow_id: str | None = None,
    workflow_name: str | None = None,
    deadlines: tuple[float, ...] | None = None,
) -> RunInfo:
    """``TemporalAgent.get_run`` by client calls alone: the ``perdure.status`` query (answered by a worker of the
    agent), or what the server alone knows (status, memo, times) when no worker answers within ``deadlines``."""
    desc = await _describe(client, workflow_id or run_id, workflow_name, any_type=workflow_id is not None)
    handle = client.get_workflow_handle(workflow_id or run_id)
    memo = await desc.memo()
    agent = str(memo.get(MEMO_AGENT) or str(desc.workflow_type)[len(WORKFLOW_PREFIX) :])
    try:
        data: dict[str, Any] | None = await query(
            handle, STATUS_QUERY, {"run_id": run_id}, deadlines or QUERY_DEADLINES
        )
    except Exception:
        data = None  # no worker answered: what the server alone knows
    status = _STATUS.get(desc.status, "running")
    if data is None:
        pending = [PendingRecord.model_validate(p) for p in memo.get(MEMO_PENDING) or []]
        if status == "running" and pending:
            status = "waiting"
        return RunInfo(
            run_id=run_id,
            agent=agent,
            status=status,
            prompt=memo.get(MEMO_PROMPT),
            attempts=1,
            created_at=desc.start_time.timestamp(),
            updated_at=(desc.close_time or desc.start_time).timestamp(),
            finished_at=desc.close_time.timestamp() if desc.close_time else None,
            owner=None,
            lease_expires=None,
            fingerprint=memo.get(MEMO_FINGERPRINT, ""),
            usage=Usage(),
            pending=[_pending(p) for p in pending if p.run_id == run_id],
        )
    if not (status in ("failed", "cancelled") and data["status"] in ("running", "waiting")):
        status = data["status"]  # the workflow may also have been terminated, or timed out
    steps = [StepRecord.model_validate(s) for s in data["steps"]]
    error = data.get("error")
    if status == "cancelled":
        error = {"type": "RunCancelled", "message": f"run {run_id!r} was cancelled"}
    elif status == "failed" and error is None:
        error = {"type": "AgentRunError", "message": f"run {run_id!r} ended {desc.status.name.lower()}"}
    times = [s.finished_at or s.started_at for s in steps]
    return RunInfo(
        run_id=run_id,
        agent=data.get("agent") or agent,
        status=status,
        prompt=data.get("prompt"),
        attempts=int(data.get("workflow_run", 1)),
        created_at=steps[0].started_at if steps else desc.start_time.timestamp(),
        updated_at=max(times) if times else desc.start_time.timestamp(),
        finished_at=desc.close_time.timestamp() if desc.close_time else None,
        owner=None,
        lease_expires=None,
        fingerprint=data.get("fingerprint", ""),
        usage=Usage(**data.get("usage", {})),
        output=data.get("output") if status == "completed" else None,
        error=error if status in ("failed", "cancelled") else None,
        steps=[
            StepInfo(
                s.key,
                step_kind(s.key),
                s.status,
                s.workflow_run,
                s.started_at,
                s.finished_at,
                s.input_tokens,
                s.output_tokens,
                s.describe,
            )
            for s in steps
        ],
        pending=[_pending(PendingRecord.model_validate(p)) for p in data.get("pending", [])],
    )


async def list_run_infos(
    client: Client,
    *,
    status: str | Sequence[str] | None = None,
    limit: int = 100,
    workflow_name: str | None = None,
) -> list[RunInfo]:
    """``TemporalAgent.list_runs`` by client calls alone (Temporal's visibility store): the runs of the agent
    whose workflow type is ``workflow_name``, or of every perdure agent (None), newest first."""
    wanted = [status] if isinstance(status, str) else list(status or [])
    unknown = [s for s in wanted if s not in _VISIBILITY_STATUS]
    if unknown:
        raise UserError(f"unknown run status {unknown[0]!r}; one of {', '.join(_VISIBILITY_STATUS)}")
    if workflow_name is not None:
        query = f"WorkflowType = '{_quoted(workflow_name)}'"
    else:
        query = f"WorkflowType STARTS_WITH '{WORKFLOW_PREFIX}'"
    names = sorted({n for s in wanted for n in _VISIBILITY_STATUS[s]})
    if names:
        query += " AND ExecutionStatus IN (" + ", ".join(f"'{n}'" for n in names) + ")"
    out: list[RunInfo] = []
    async for wf in client.list_workflows(query, page_size=min(max(limit, 1), 1000)):
        memo = await wf.memo()
        pending = [PendingRecord.model_validate(p) for p in memo.get(MEMO_PENDING) or []]
        state = _STATUS.get(wf.status, "running") if wf.status is not None else "running"
        if state == "running" and pending:
            state = "waiting"
        if wanted and state not in wanted:
            continue
        out.append(
            RunInfo(
                run_id=wf.id,
                agent=memo.get(MEMO_AGENT) or str(wf.workflow_type)[len(WORKFLOW_PREFIX) :],
                status=state,
                prompt=memo.get(MEMO_PROMPT),
                attempts=1,
                created_at=wf.start_time.timestamp(),
                updated_at=(wf.close_time or wf.start_time).timestamp(),
                finished_at=wf.close_time.timestamp() if wf.close_time else None,
                owner=None,
                lease_expires=None,
                fingerprint=memo.get(MEMO_FINGERPRINT, ""),
                usage=Usage(),
                pending=[_pending(p) for p in pending],
            )
        )
        if len(out) >= limit:
            break
    return out


async def stuck_run_infos(client: Client, seconds: float, *, workflow_name: str | None = None) -> list[RunInfo]:
    """Runs that should move and do not: running, not waiting for a human, and no event in their workflow's
    history for ``seconds`` (no step scheduled or finished, no workflow task: e.g. no worker polls their task
    queue, or their tool hangs). ``updated_at`` is that last event's time. Temporal re-runs the steps of dead
    workers by itself: a run is stuck only when that does not happen either."""
    from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest

    cutoff = time.time() - seconds
    out: list[RunInfo] = []
    for info in await list_run_infos(client, status="running", limit=10_000, workflow_name=workflow_name):
        history = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution={"workflow_id": info.run_id},
                maximum_page_size=1,
            )
        )
        events = history.history.events
        last = events[0].event_time.ToDatetime(tzinfo=UTC).timestamp() if events else info.updated_at
        if last < cutoff:
            out.append(dataclasses.replace(info, updated_at=last))
    return out


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pending(p: PendingRecord) -> PendingDecision:
    return PendingDecision(p.run_id, p.tool_call_id, p.tool_name, p.args, p.reason, p.key, p.since)


def _rpc_error(e: RPCError, run_id: str) -> Exception:
    if e.status == RPCStatusCode.NOT_FOUND:
        return UserError(f"no run {run_id!r} on this Temporal namespace")
    error: Exception = e
    return error


_TEMPORAL_NONDETERMINISM = "[TMPRL1100]"
_ACTIVITY_ID_MISMATCH = re.compile(
    r"Activity id of scheduled event '(?P<recorded>.+?)' does not match activity id of activity command "
    r"'(?P<requested>.+)'"
)


def _nondeterminism(message: str, run_id: str) -> Exception:
    """Temporal's replay check failed the run. Activity ids are ``<step key>: <step>``: name both sides."""
    match = _ACTIVITY_ID_MISMATCH.search(message)
    if match:
        key, _, recorded = match["recorded"].partition(": ")
        _, _, requested = match["requested"].partition(": ")
        return NonDeterminismError(run_id=run_id, step_key=key, recorded=recorded, requested=requested)
    return error_from_record({"type": "NonDeterminismError", "message": f"run {run_id!r} no longer replays: {message}"})


def _run_error(e: WorkflowFailureError, run_id: str) -> Exception:
    """The run's own error, rebuilt from the workflow failure."""
    cause = e.cause
    if isinstance(cause, CancelledError):
        return RunCancelled(f"run {run_id!r} was cancelled")
    if isinstance(cause, ApplicationError):
        if cause.details and isinstance(cause.details[0], dict) and "type" in cause.details[0]:
            return error_from_record(cause.details[0])
        if cause.message.startswith(_TEMPORAL_NONDETERMINISM):
            return _nondeterminism(cause.message, run_id)
        return AgentRunError(f"run {run_id!r} failed: {cause.message}")
    if isinstance(cause, TerminatedError):
        return AgentRunError(f"run {run_id!r} was terminated: {cause.message}")
    if isinstance(cause, TimeoutError):
        return AgentRunError(f"run {run_id!r} timed out: {cause.message}")
    return AgentRunError(f"run {run_id!r} failed: {cause or e}")
