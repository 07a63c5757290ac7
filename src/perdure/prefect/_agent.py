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
Prefect marks it ``Crashed`` (Prefect's flow-run heartbeats and zombie detection do that).

Run Prefect's server on PostgreSQL. On SQLite it answers HTTP 503 whenever a request that reads before it
writes (creating a flow run does) overlaps another write, such as the recording of the previous run's task
runs; Prefect's client retries after 2, 4, 8... seconds (``PREFECT_CLIENT_MAX_RETRIES``, default 5), so runs
succeed but start seconds late under any concurrency.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from prefect.blocks.core import Block
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.context import AsyncClientContext, FlowRunContext
from prefect.exceptions import ObjectNotFound, Pause, PrefectHTTPStatusError
from prefect.filesystems import LocalFileSystem
from prefect.flow_engine import run_flow_async
from prefect.flows import Flow
from prefect.results import ResultStore, aget_default_result_storage
from prefect.serializers import JSONSerializer
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Cancelling, Pending
from prefect.tasks import Task

from .._agent import Agent
from .._engine import new_run_id
from .._exceptions import (
    AgentRunError,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
    RunInProgress,
    RunWaiting,
    UserError,
    error_from_record,
)
from .._loop import AgentRunResult, RunInput, drive
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, step_kind
from ..durable.codec import decode_input, encode_input, encode_output
from ..durable.owner import is_dead_local_owner, this_owner
from ..messages import ModelMessage
from ..models import ModelSettings
from ..observability import engine as telemetry
from ..runs import PendingDecision, RunInfo, StepInfo
from ..usage import Usage, UsageLimits
from . import _names as names
from ._config import TaskConfig
from ._executor import (
    ATTEMPTS,
    ENGINE,
    Attempt,
    Executor,
    Watcher,
    cache_key,
    is_conflict,
    model_request,
    should_retry,
    tool_call,
)

__all__ = ["PrefectAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

_CLAIMED_BY = "perdure: executed by "

# Prefect state type -> perdure run status (CANCELLING and orphaned runs are refined in _status).
_STATUS = {
    StateType.SCHEDULED: "pending",
    StateType.CRASHED: "pending",  # the process died under Prefect's eyes: resumable, like a pending run
    StateType.PENDING: "running",
    StateType.RUNNING: "running",
    StateType.CANCELLING: "running",
    StateType.PAUSED: "waiting",
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CANCELLED: "cancelled",
}
_STATE_TYPES = {status: [t for t, s in _STATUS.items() if s == status] for status in set(_STATUS.values())}
_STATE_TYPES["cancelled"].append(StateType.CANCELLING)  # a cancelling run whose process died


def _encode_options(run: RunInput) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode_input(run))
    data.pop("prompt", None)
    return data


def _input_of(run_id: str, prompt: str | None, options: Mapping[str, Any]) -> RunInput:
    return decode_input(run_id, json.dumps({**options, "prompt": prompt}))


def _owner(flow_run: Any) -> str | None:
    state = flow_run.state
    if state is not None and state.type == StateType.PENDING:
        message = state.message or ""
        return message[len(_CLAIMED_BY) :] if message.startswith(_CLAIMED_BY) else None
    owner: str | None = flow_run.infrastructure_pid
    return owner


def _orphaned(flow_run: Any) -> bool:
    """True if the run's state says it executes, but the process executing it is gone."""
    if flow_run.id in ATTEMPTS:
        return False
    owner = _owner(flow_run)
    if owner is None:
        return False  # not executed by perdure (or not yet): leave it alone
    return owner == this_owner() or is_dead_local_owner(owner)


def _status(flow_run: Any) -> str:
    state = flow_run.state
    if state is None:
        return "pending"
    if state.type == StateType.CANCELLING and _orphaned(flow_run):
        return "cancelled"
    return _STATUS.get(state.type, "running")


def _local_storage(path: os.PathLike[str]) -> Any:
    """A directory as a Prefect storage block (not saved on the server: every process builds its own)."""
    return LocalFileSystem(basepath=str(Path(os.fspath(path)).expanduser().resolve()))


async def _attempts(client: Any, flow_run: Any) -> int:
    """How many executions the run had, this one included: each began with a perdure claim."""
    states = await client.read_flow_run_states(flow_run.id)
    claims = [s for s in states if s.type == StateType.PENDING and (s.message or "").startswith(_CLAIMED_BY)]
    return max(1, len(claims))


@asynccontextmanager
async def _client() -> AsyncIterator[Any]:
    """The Prefect client of this task, shared with everything Prefect does inside it (the flow engine too)."""
    async with AsyncClientContext.get_or_create() as context:
        yield context.client


def _step_info(
    key: str, status: str, record: Mapping[str, Any] | None, started: float, finished: float | None
) -> StepInfo:
    kind = step_kind(key)
    tokens = (0, 0)
    if record is not None and kind == "model":
        usage = record["result"].get("usage") or {}
        tokens = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
    attempt = int(record.get("attempt", 1)) if record else 0
    describe = str(record.get("describe", "")) if record else ""
    return StepInfo(key, kind, status, attempt, started, finished, tokens[0], tokens[1], describe)


def _timestamp(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


class PrefectAgent(Generic[DepsT, OutputT]):
    """Durable runs of ``agent`` as Prefect flow runs, with every model request and tool call a cached task.

    ::

        prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=Path("/shared/results")))
        result = await prefect_agent.run("Refund order 42", run_id="refund-42")

    The process needs a Prefect server (``PREFECT_API_URL``) and result storage that every process resuming a
    run can read. Run the same ``run_id`` again and a finished run returns its recorded result; a run whose
    process died is resumed where it stopped: recorded steps are cache hits, the rest executes. Works inside
    your own ``@flow`` too (the agent's run is then its own flow run, linked to yours by a tag).

    Args:
        agent: the agent; it must have a ``name`` (the flow is named after it, unless ``name`` is given).
        name: the Prefect flow's name.
        task_config: Prefect options for every step's task (retries, timeouts, result storage).
        model_task_config: options for model requests, over ``task_config``.
        tool_task_config: options per tool name, over ``task_config``.
        poll_interval: how soon an executing run notices a cancellation: its process polls the server this
            often (abandoning an in-flight model request), and a step boundary reads the run's state itself when
            its last read is older than this.
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
        if not isinstance(agent, Agent):
            raise UserError(f"PrefectAgent wraps an Agent, not {type(agent).__name__}")
        flow_name = name or agent.name
        if not flow_name:
            raise UserError(
                "a Prefect agent needs a name: its flow, and the runs in Prefect, are named after it. "
                "Pass Agent(..., name='support') or PrefectAgent(agent, name='support')"
            )
        self.agent = agent
        self.name: str = flow_name
        self._config = task_config or TaskConfig()
        self._model_config = (model_task_config or TaskConfig()).merged_over(self._config)
        self._tool_configs = {k: v.merged_over(self._config) for k, v in (tool_task_config or {}).items()}
        self.poll_interval = poll_interval
        try:
            self._flow: Any = Flow(
                fn=self._flow_function(),
                name=self.name,
                description=f"perdure agent {self.name!r}: one flow run per agent run",
                validate_parameters=False,
                persist_result=False,  # the output is rebuilt from the steps' records
                result_storage=self._storage_option(self._config.result_storage),
                log_prints=False,
            )
        except Exception as e:  # an invalid flow name, a block that was not saved
            raise UserError(f"cannot build the Prefect flow for agent {self.name!r}: {e}") from e
        self._tasks: dict[str, Any] = {}
        self._stores: dict[int, Any] = {}
        self._deployments: dict[str, UUID] = {}
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"PrefectAgent({self.name!r})"

    # --- Prefect objects --------------------------------------------------------------------------------

    def _flow_function(self) -> Any:
        async def run_agent(run_id: str, prompt: str | None = None, options: dict[str, Any] | None = None) -> Any:
            return await self._flow_body(run_id, prompt, options or {})

        run_agent.__qualname__ = run_agent.__name__ = "run_agent"
        return run_agent

    @staticmethod
    def _storage_option(storage: Any) -> Any:
        """The result storage as Prefect options take it: a path, a block slug, or a saved block."""
        if storage is None or isinstance(storage, str | Block):
            return storage
        return Path(os.fspath(storage))

    async def _store(self, storage: Any) -> Any:
        """A result store over ``storage``, to read and write records outside a task."""
        store = self._stores.get(id(storage))
        if store is None:
            if storage is None:
                block = await aget_default_result_storage()
            elif isinstance(storage, str):
                block = await Block.aload(storage)
            elif isinstance(storage, Block):
                block = storage
            else:
                block = _local_storage(storage)
            store = ResultStore(result_storage=block, serializer=JSONSerializer())
            self._stores[id(storage)] = store
        return store

    def _tool_config(self, tool_name: str) -> TaskConfig:
        return self._tool_configs.get(tool_name, self._config)

    def _config_of(self, step: Step) -> TaskConfig:
        if isinstance(step, ModelStep):
            return self._model_config
        if isinstance(step, ToolStep):
            return self._tool_config(step.tool_name)
        return self._config

    def _task_for(self, step: Step) -> Any:
        name = names.MODEL_TASK if isinstance(step, ModelStep) else names.tool_task(step.tool_name)  # type: ignore[union-attr]
        task = self._tasks.get(name)
        if task is None:
            config = self._config_of(step)
            own_storage = config.result_storage is not self._config.result_storage
            task = Task(
                fn=model_request if isinstance(step, ModelStep) else tool_call,
                name=name,
                task_run_name="{step_key}",
                cache_key_fn=cache_key,
                persist_result=True,
                result_serializer="json",
                # Tasks share the flow's result store unless their own differs (resolved once per flow run).
                result_storage=self._storage_option(config.result_storage) if own_storage else None,
                retries=config.retries or 0,
                retry_delay_seconds=config.retry_delay_seconds or 0,
                retry_condition_fn=should_retry,
                timeout_seconds=config.timeout_seconds,
                log_prints=False,
            )
            self._tasks[name] = task
        return task

    async def _deployment(self, client: Any) -> UUID:
        """The id of this agent's deployment on the current server (created once per process)."""
        url = str(PREFECT_API_URL.value())
        deployment_id = self._deployments.get(url)
        if deployment_id is None:
            flow_id = await client.create_flow(self._flow)
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name=names.DEPLOYMENT,
                description="Runs of a perdure agent: started, resumed and approved through PrefectAgent.",
                tags=[names.TAG],
            )
            self._deployments[url] = deployment_id
        return deployment_id

    async def _lookup(self, client: Any, run_id: str) -> Any | None:
        flow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[await self._deployment(client)]),
                idempotency_key=FlowRunFilterIdempotencyKey(any_=[run_id]),
            ),
            limit=1,
        )
        return flow_runs[0] if flow_runs else None

    async def _require(self, client: Any, run_id: str) -> Any:
        flow_run = await self._lookup(client, run_id)
        if flow_run is None:
            raise UserError(f"no run {run_id!r} of agent {self.name!r} on the Prefect server {PREFECT_API_URL.value()}")
        return flow_run

    def _watcher(self) -> Watcher:
        loop = asyncio.get_running_loop()
        watcher = self._watchers.get(loop)
        if watcher is None:
            watcher = self._watchers[loop] = Watcher(self.poll_interval)
        return watcher

    # --- starting and resuming runs ---------------------------------------------------------------------

    async def run(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run durably to the output, as a flow run named ``run_id``.

        With a ``run_id`` that exists: a finished run returns its recorded result (nothing executes), an orphaned
        run is resumed, a run executing in a live process raises ``RunInProgress``. A run that reaches a tool
        with ``requires_approval=True`` is suspended in Prefect and this raises ``RunWaiting``.
        """
        async with _client() as client:
            flow_run, created = await self._accept(
                client, prompt, run_id, message_history, model, usage_limits, model_settings
            )
            return await self._continue(client, flow_run, deps, fresh=created)

    def run_sync(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """``run`` for code without an event loop."""
        return asyncio.run(
            self.run(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        )

    async def start(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """Accept a run durably (a scheduled flow run) and return its id; ``serve()`` or ``resume()`` executes it."""
        async with _client() as client:
            flow_run, _ = await self._accept(
                client, prompt, run_id, message_history, model, usage_limits, model_settings
            )
            return str(flow_run.idempotency_key)

    async def _accept(
        self,
        client: Any,
        prompt: str | None,
        run_id: str | None,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
    ) -> tuple[Any, bool]:
        """Create the run's flow run (accepted = durable), or find it. True if this call created it."""
        if model is not None and not isinstance(model, str):
            raise UserError("a durable run records its model by name: pass a model string, e.g. 'openai:gpt-4.1'")
        run_id = run_id or new_run_id()
        if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise UserError(f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}")
        run = RunInput(
            prompt=prompt,
            run_id=run_id,
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model_name=model,
        )
        nonce = uuid4().hex
        # Its accept_run span is reported only if the run is new (a duplicate submission reports nothing).
        acceptance = telemetry.accept_run(agent_name=self.agent.name, run_id=run_id, engine=ENGINE)
        context: dict[str, Any] = {
            "agent": self.name,
            "fingerprint": self.agent.fingerprint(),
            "nonce": nonce,
            # Every attempt, in any process, continues the trace the run was accepted in.
            "trace_context": acceptance.trace_context,
        }
        parent = FlowRunContext.get()
        tags = [names.TAG]
        if parent is not None and parent.flow_run is not None:  # called inside the user's own flow
            context["parent_flow_run_id"] = str(parent.flow_run.id)
            tags.append(f"parent:{parent.flow_run.id}")
        flow_run = await client.create_flow_run_from_deployment(
            await self._deployment(client),
            parameters={"run_id": run_id, "prompt": prompt, "options": _encode_options(run)},
            name=run_id,
            idempotency_key=run_id,
            tags=tags,
            context={"perdure": context},
        )
        created = (flow_run.context or {}).get("perdure", {}).get("nonce") == nonce
        if created:
            acceptance.commit()
            telemetry.run_started(agent_name=self.agent.name, engine=ENGINE)
        return flow_run, created

    async def resume(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        """Continue a run where it stopped (executing the same flow run again: recorded steps are cache hits).

        A finished run returns its recorded result without executing; a waiting one raises ``RunWaiting``.
        """
        async with _client() as client:
            return await self._continue(client, await self._require(client, run_id), deps, fresh=False)

    def resume_sync(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        return asyncio.run(self.resume(run_id, deps=deps))

    async def _continue(self, client: Any, flow_run: Any, deps: Any, *, fresh: bool) -> AgentRunResult[OutputT]:
        run_id = str(flow_run.idempotency_key)
        kind = flow_run.state.type if flow_run.state is not None else StateType.SCHEDULED
        if kind == StateType.COMPLETED:
            return await self._replay(flow_run, deps)
        if kind == StateType.FAILED:
            raise await self._recorded_error(client, flow_run)
        if kind == StateType.CANCELLED:
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if kind == StateType.PAUSED:
            raise RunWaiting(run_id, [p.__dict__ for p in await self._pending(client, flow_run)])
        if kind == StateType.CANCELLING:
            if not _orphaned(flow_run):
                raise RunInProgress(run_id, _owner(flow_run))
            await self._end_cancelled(client, flow_run)
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if kind in (StateType.PENDING, StateType.RUNNING) and not _orphaned(flow_run):
            raise RunInProgress(run_id, _owner(flow_run))
        # Scheduled, resumed after a decision, crashed, or orphaned: this process executes it.
        owner = this_owner()
        claim = await client.set_flow_run_state(
            flow_run.id,
            Pending(message=_CLAIMED_BY + owner),
            force=kind in (StateType.PENDING, StateType.RUNNING),  # no transition leads out of these to Pending
        )
        if claim.status != SetStateStatus.ACCEPT:
            raise RunInProgress(run_id)
        await client.update_flow_run(flow_run.id, infrastructure_pid=owner)
        flow_run.state = claim.state
        number = 1 if fresh else await _attempts(client, flow_run)
        return await self._execute(flow_run, deps, fresh=fresh, number=number)

    async def _execute(self, flow_run: Any, deps: Any, *, fresh: bool, number: int) -> AgentRunResult[OutputT]:
        run_id = str(flow_run.idempotency_key)
        if flow_run.id in ATTEMPTS:
            raise RunInProgress(run_id, this_owner())
        attempt = ATTEMPTS[flow_run.id] = Attempt(deps=deps, fresh=fresh, number=number)
        try:
            # perdure suspends a run from inside it (at a wait step), never from outside; the flow engine starts
            # a watcher for suspensions from outside (a thread and a websocket, which blocks the event loop as
            # it starts and stops) for every flow run it sees with a deployment. It sees this run without one.
            unobserved = flow_run.model_copy(update={"deployment_id": None})
            state = await run_flow_async(
                self._flow, flow_run=unobserved, parameters=flow_run.parameters, return_type="state"
            )
        except Pause:
            raise RunWaiting(run_id, attempt.pending) from None
        finally:
            ATTEMPTS.pop(flow_run.id, None)
        if attempt.error is not None:
            raise attempt.error
        if attempt.result is not None:
            return attempt.result
        if state is not None and state.type in (StateType.CANCELLED, StateType.CANCELLING):
            raise RunCancelled(f"run {run_id!r} was cancelled")
        message = getattr(state, "message", None) or "no message"
        raise AgentRunError(f"run {run_id!r} ended in Prefect state {getattr(state, 'name', state)!r}: {message}")

    async def _flow_body(self, run_id: str, prompt: str | None, options: dict[str, Any]) -> Any:
        """The flow: drive the agent loop, each step a cached task."""
        context = FlowRunContext.get()
        flow_run_id = context.flow_run.id
        client = context.client
        attempt = ATTEMPTS.get(flow_run_id) or Attempt(deps=None, fresh=False)  # executed by something else
        run = _input_of(run_id, prompt, options)
        executor: Executor | None = None
        watcher = self._watcher()
        try:
            model = self.agent.resolve_model(run.model_name)
            executor = Executor(
                self,
                run_id,
                flow_run_id,
                client,
                model,
                attempt.deps,
                run.prompt,
                fresh=attempt.fresh,
                attempt=attempt.number,
            )
            watcher.add(executor)
            with telemetry.run_attempt(
                self.agent,
                run_id=run_id,
                engine=ENGINE,
                attempt=attempt.number,
                trace_context=(context.flow_run.context or {}).get("perdure", {}).get("trace_context"),
                model=model.model_name,
                prompt=run.prompt,
                new_run=False,  # counted when accepted
                suspend=(Pause,),
                count_replayed=lambda: executor.replayed if executor is not None else 0,
            ) as observed:
                result = await drive(self.agent.new_loop(run, attempt.deps, model), executor.execute)
                observed.set_result(result)
        except Pause:
            attempt.pending = executor.pending if executor is not None else []
            raise
        except RunCancelled as e:
            attempt.error = e
            await self._record_outcome(client, flow_run_id, {"status": "cancelled", "error": e.to_record()})
            return Cancelled(message=str(e))
        except PerdureError as e:
            attempt.error = e
            await self._record_outcome(client, flow_run_id, {"status": "failed", "error": e.to_record()})
            raise
        except Exception as e:
            error = AgentRunError(f"run {run_id!r} failed: {type(e).__name__}: {e}")
            error.__cause__ = e
            attempt.error = error
            record = {"type": type(e).__name__, "message": f"{type(e).__name__}: {e}"}
            await self._record_outcome(client, flow_run_id, {"status": "failed", "error": record})
            raise
        finally:
            if executor is not None:
                watcher.remove(executor)
        output = json.loads(encode_output(result.output))
        await self._record_outcome(
            client, flow_run_id, {"status": "completed", "output": output, "usage": result.usage().__dict__}
        )
        attempt.result = result
        return output

    async def _record_outcome(self, client: Any, flow_run_id: UUID, outcome: dict[str, Any]) -> None:
        """How the run ended, before the flow run's final state: any process reads it with the run."""
        value = json.dumps(outcome)
        try:
            await client.create_flow_run_input(flow_run_id, key=names.OUTCOME_INPUT, value=value)
        except PrefectHTTPStatusError as e:
            if not is_conflict(e):
                raise
            # An earlier execution ended the same way, then died before the final state: write it again.
            await client.delete_flow_run_input(flow_run_id, key=names.OUTCOME_INPUT)
            await client.create_flow_run_input(flow_run_id, key=names.OUTCOME_INPUT, value=value)

    async def _outcome(self, client: Any, flow_run: Any) -> dict[str, Any] | None:
        try:
            value = await client.read_flow_run_input(flow_run.id, key=names.OUTCOME_INPUT)
        except ObjectNotFound:
            return None
        outcome: dict[str, Any] = json.loads(value)
        return outcome

    async def _recorded_error(self, client: Any, flow_run: Any) -> PerdureError:
        outcome = await self._outcome(client, flow_run)
        if outcome and outcome.get("error"):
            return error_from_record(outcome["error"])
        message = flow_run.state.message if flow_run.state is not None else None
        return AgentRunError(f"run {flow_run.idempotency_key!r} failed in Prefect: {message or 'no message'}")

    async def _replay(self, flow_run: Any, deps: Any) -> AgentRunResult[OutputT]:
        """Rebuild a finished run's result (output, messages, usage) from its records; nothing executes."""
        run_id = str(flow_run.idempotency_key)
        params = flow_run.parameters
        run = _input_of(run_id, params.get("prompt"), params.get("options") or {})
        model = self.agent.resolve_model(run.model_name)
        executor = Executor(self, run_id, flow_run.id, None, model, deps, run.prompt, fresh=False)

        async def replay_only(step: Step) -> StepResult:
            store = await self._store(self._config_of(step).result_storage)
            key = names.step_cache_key(run_id, step.key)
            if not await store.aexists(key):
                raise NonDeterminismError(
                    run_id=run_id,
                    step_key=step.key,
                    recorded="no such step (the run is finished)",
                    requested=step.describe(),
                )
            return executor.accept(step, (await store.aread(key)).result)

        return await drive(self.agent.new_loop(run, deps, model), replay_only)

    async def recover(self, *, deps: DepsT = None) -> list[str]:  # type: ignore[assignment]
        """Execute every run of this agent that no live process executes: scheduled (started, or resumed after
        a decision), crashed, or orphaned. Returns their ids once each has finished or is waiting again."""
        async with _client() as client:
            flow_runs = await self._flow_runs(
                client,
                [StateType.SCHEDULED, StateType.CRASHED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING],
                limit=200,
            )
        ids = [
            str(fr.idempotency_key)
            for fr in flow_runs
            if fr.idempotency_key
            and fr.id not in ATTEMPTS
            and (fr.state.type in (StateType.SCHEDULED, StateType.CRASHED) or _orphaned(fr))
        ]

        async def one(run_id: str) -> None:
            try:
                await self.resume(run_id, deps=deps)
            except (AgentRunError, RunWaiting, RunInProgress):
                pass  # recorded with the run; recover() resumes, it does not judge

        await asyncio.gather(*(one(r) for r in ids))
        return ids

    async def serve(
        self,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        stop: asyncio.Event | None = None,
    ) -> None:
        """Be a worker for this agent: execute started, decided and orphaned runs until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.recover(deps=deps)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            except TimeoutError:
                pass

    # --- decisions and cancellation -------------------------------------------------------------------

    async def approve(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        """Decide on a waiting call from any process.

        Once every call the run waits for is decided, the flow run is resumed in Prefect with the decisions as
        its run input; ``resume(run_id)`` (or ``serve()``) then executes it. Deciding in Prefect's UI (the
        suspended flow run's form) works the same way.
        """
        async with _client() as client:
            flow_run = await self._require(client, run_id)
            calls, decisions = await self._waiting(client, flow_run)
            index = next((i for i, c in enumerate(calls) if c.tool_call_id == tool_call_id), None)
            if index is None or index in decisions:
                waiting = ", ".join(
                    f"{c.tool_name} ({c.tool_call_id})" for i, c in enumerate(calls) if i not in decisions
                )
                raise UserError(
                    f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision "
                    f"(status {_status(flow_run)}); waiting: {waiting or 'none'}"
                )
            match = [calls[index]]
            decision = Decision(approved=approved, note=note)
            if len(calls) > 1:  # recorded until every call is decided, by whichever processes
                pause = flow_run.state.state_details.pause_key
                try:
                    await client.create_flow_run_input(
                        flow_run.id, key=names.decision_input(pause, index), value=decision.model_dump_json()
                    )
                except PrefectHTTPStatusError as e:
                    if not is_conflict(e):
                        raise
                    raise UserError(f"call {tool_call_id!r} of run {run_id!r} is decided already") from None
                _, decisions = await self._waiting(client, flow_run)  # the others may have been decided meanwhile
            decisions[index] = decision
            if len(decisions) < len(calls):
                await self._waits_ended(flow_run, match, "approved" if approved else "denied", note)
                return
            answer = {f"call_{i}": d.model_dump(mode="json") for i, d in decisions.items()}
            response = await client.resume_flow_run(flow_run.id, run_input=answer)
            if response.status == SetStateStatus.REJECT:
                reason = getattr(response.details, "reason", "")
                raise UserError(f"Prefect refused to resume run {run_id!r} with the decisions: {reason}")
        await self._waits_ended(flow_run, match, "approved" if approved else "denied", note)

    def approve_sync(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        asyncio.run(self.approve(run_id, tool_call_id, approved=approved, note=note))

    async def cancel(self, run_id: str) -> None:
        """Cancel a run from any process: it stops at its next step boundary and ends ``cancelled``."""
        async with _client() as client:
            flow_run = await self._require(client, run_id)
            kind = flow_run.state.type if flow_run.state is not None else StateType.SCHEDULED
            if kind in (StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED):
                return
            executing = kind in (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
            if executing and not _orphaned(flow_run):
                if kind != StateType.CANCELLING:
                    await client.set_flow_run_state(flow_run.id, Cancelling(message=f"run {run_id!r} was cancelled"))
                return
            # Nobody executes it (scheduled, suspended, crashed, orphaned): it ends now.
            await self._end_cancelled(client, flow_run)

    def cancel_sync(self, run_id: str) -> None:
        asyncio.run(self.cancel(run_id))

    async def _end_cancelled(self, client: Any, flow_run: Any) -> None:
        error = RunCancelled(f"run {flow_run.idempotency_key!r} was cancelled")
        waits = await self._pending(client, flow_run)
        await self._record_outcome(client, flow_run.id, {"status": "cancelled", "error": error.to_record()})
        await client.set_flow_run_state(flow_run.id, Cancelled(message=str(error)), force=True)
        telemetry.run_ended(agent_name=self.agent.name, engine=ENGINE, status="cancelled")
        await self._waits_ended(flow_run, waits, "cancelled")

    async def _waits_ended(
        self,
        flow_run: Any,
        waits: list[PendingDecision],
        outcome: Literal["approved", "denied", "cancelled"],
        note: str | None = None,
    ) -> None:
        """Report the end of waits for a decision: the process that records the decision reports it."""
        context = (flow_run.context or {}).get("perdure", {})
        for wait in waits:
            telemetry.approval_wait_ended(
                agent_name=self.agent.name,
                run_id=wait.run_id,
                engine=ENGINE,
                attempt=1,
                tool_name=wait.tool_name,
                tool_call_id=wait.tool_call_id,
                reason=wait.reason,
                outcome=outcome,
                started_at=wait.since,
                trace_context=context.get("trace_context"),
                args=wait.args,
                note=note,
            )

    # --- inspection ---------------------------------------------------------------------------------------

    async def _waiting(self, client: Any, flow_run: Any) -> tuple[list[PendingDecision], dict[int, Decision]]:
        """The calls the run's suspension waits for (in the order of its run input), and those decided so far."""
        state = flow_run.state
        if state is None or state.type != StateType.PAUSED or not state.state_details.pause_key:
            return [], {}
        pause = state.state_details.pause_key
        try:
            value = await client.read_flow_run_input(flow_run.id, key=names.pending_input(pause))
        except ObjectNotFound:
            return [], {}  # paused by someone else (Prefect's UI): nothing of perdure's waits
        run_id = str(flow_run.idempotency_key)
        calls = [
            PendingDecision(run_id, c["tool_call_id"], c["tool_name"], c["args"], c["reason"], c["key"], c["since"])
            for c in json.loads(value)
        ]
        decided: dict[int, Decision] = {}
        if len(calls) > 1:  # one call's decision waits, as a run input of its own, for the others
            prefix = names.decision_input(pause, 0)[:-1]
            for item in await client.filter_flow_run_input(
                flow_run.id, key_prefix=prefix, limit=len(calls) + 1, exclude_keys=set()
            ):
                decided[int(item.key[len(prefix) :])] = Decision.model_validate_json(item.value)
        return calls, decided

    async def _pending(self, client: Any, flow_run: Any) -> list[PendingDecision]:
        calls, decided = await self._waiting(client, flow_run)
        return [c for i, c in enumerate(calls) if i not in decided]

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's status, steps (Prefect's task runs, with their recorded results), usage, error and
        pending decisions."""
        async with _client() as client:
            flow_run = await self._require(client, run_id)
            return await self._info(client, flow_run, with_steps=True)

    def get_run_sync(self, run_id: str) -> RunInfo:
        return asyncio.run(self.get_run(run_id))

    async def list_runs(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        """This agent's runs, newest first."""
        wanted = [status] if isinstance(status, str) else list(status or [])
        unknown = [s for s in wanted if s not in _STATE_TYPES]
        if unknown:
            raise UserError(f"unknown run status {unknown[0]!r}; one of {', '.join(sorted(_STATE_TYPES))}")
        types = sorted({t for s in wanted for t in _STATE_TYPES[s]}, key=lambda t: t.value) or None
        async with _client() as client:
            flow_runs = await self._flow_runs(client, types, limit=limit)
            infos = [await self._info(client, fr, with_steps=False) for fr in flow_runs if fr.idempotency_key]
        return [i for i in infos if not wanted or i.status in wanted]

    def list_runs_sync(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        return asyncio.run(self.list_runs(status=status, limit=limit))

    async def _flow_runs(self, client: Any, types: list[Any] | None, *, limit: int) -> list[Any]:
        state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types)) if types else None
        flow_runs: list[Any] = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[self.name])),
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[await self._deployment(client)]), state=state
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        return flow_runs

    async def _info(self, client: Any, flow_run: Any, *, with_steps: bool) -> RunInfo:
        run_id = str(flow_run.idempotency_key)
        status = _status(flow_run)
        outcome = await self._outcome(client, flow_run) if status in ("completed", "failed", "cancelled") else None
        steps = await self._steps(client, flow_run) if with_steps else []
        if outcome and outcome.get("usage"):
            usage = Usage(**outcome["usage"])
        else:
            usage = Usage(
                requests=sum(1 for s in steps if s.kind == "model" and s.status == "done"),
                input_tokens=sum(s.input_tokens for s in steps),
                output_tokens=sum(s.output_tokens for s in steps),
                tool_calls=sum(1 for s in steps if s.kind == "tool" and s.status == "done"),
            )
        context = (flow_run.context or {}).get("perdure", {})
        state = flow_run.state
        return RunInfo(
            run_id=run_id,
            agent=str(context.get("agent", self.name)),
            status=status,
            prompt=(flow_run.parameters or {}).get("prompt"),
            # Executions so far: counted from the run's claims (listings take Prefect's own run count instead).
            attempts=(await _attempts(client, flow_run) if flow_run.start_time else 0)
            if with_steps
            else flow_run.run_count,
            created_at=_timestamp(flow_run.created) or 0.0,
            updated_at=_timestamp(flow_run.updated) or 0.0,
            finished_at=_timestamp(flow_run.end_time) if status in ("completed", "failed", "cancelled") else None,
            owner=_owner(flow_run) if status == "running" else None,
            lease_expires=None,
            fingerprint=str(context.get("fingerprint", "")),
            usage=usage,
            output=(outcome or {}).get("output"),
            error=(outcome or {}).get("error"),
            steps=steps,
            pending=await self._pending(client, flow_run),
            trace_context=context.get("trace_context"),
            cancel_requested=state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED),
        )

    async def _read_record(self, run_id: str, step_key: str) -> dict[str, Any] | None:
        """A step's record, wherever its kind of step is stored (a task run names its step, not its tool)."""
        kind = step_kind(step_key)
        configs = [self._model_config] if kind == "model" else [self._config, *self._tool_configs.values()]
        cache_key = names.step_cache_key(run_id, step_key)
        for config in configs:
            store = await self._store(config.result_storage)
            if await store.aexists(cache_key):
                record: dict[str, Any] = (await store.aread(cache_key)).result
                return record
        return None

    async def _steps(self, client: Any, flow_run: Any) -> list[StepInfo]:
        """The run's steps from Prefect's task runs (executed ones win over cache hits), with their records."""
        run_id = str(flow_run.idempotency_key)
        task_runs: list[Any] = []
        while True:  # the API pages at 200
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
                offset=len(task_runs),
            )
            task_runs.extend(page)
            if len(page) < 200:
                break
        chosen: dict[str, Any] = {}
        for task_run in task_runs:
            earlier = chosen.get(task_run.name)
            if earlier is None or (earlier.state_name == "Cached" and task_run.state_name != "Cached"):
                chosen[task_run.name] = task_run
        steps: list[StepInfo] = []
        for key, task_run in chosen.items():
            status = {StateType.COMPLETED: "done", StateType.RUNNING: "started"}.get(task_run.state_type, "failed")
            record = await self._read_record(run_id, key) if status == "done" else None
            started = _timestamp(task_run.start_time) or _timestamp(task_run.expected_start_time) or 0.0
            steps.append(_step_info(key, status, record, started, _timestamp(task_run.end_time)))
        # Waits are no tasks: the suspensions' run inputs name them, their records hold the decisions.
        suffix = names.pending_input("")
        for item in await client.filter_flow_run_input(
            flow_run.id, key_prefix=names.INPUT_PREFIX, limit=200, exclude_keys=set()
        ):
            if not item.key.endswith(suffix):
                continue
            for call in json.loads(item.value):
                record = await self._read_record(run_id, call["key"])
                finished = record.get("finished_at") if record else None
                steps.append(_step_info(call["key"], "done" if record else "waiting", record, call["since"], finished))
        return sorted(steps, key=lambda s: s.started_at)
