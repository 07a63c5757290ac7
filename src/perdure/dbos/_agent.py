"""``DBOSAgent``: durable runs on DBOS Transact.

A run is a DBOS workflow whose id is the run id. The agent loop (written once, in ``perdure._loop``) is the
workflow's code; each model request and tool call is a DBOS step whose output is the tagged result, so a
``ModelRetry`` or an error raised by a tool is recorded, never retried. A human decision is a DBOS message
(``send``/``recv``); while a run waits, its status is published as a DBOS event. Recovery is DBOS's: a process
that launches DBOS finishes the pending runs of the agents it registered.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dbos import DBOS, PortableWorkflowError, SetWorkflowID
from dbos import error as dbos_error

from .._agent import Agent
from .._engine import new_run_id, perform_model_step, perform_tool_step
from .._exceptions import (
    AgentRunError,
    NonDeterminismError,
    RunCancelled,
    RunWaiting,
    UserError,
    error_from_record,
)
from .._loop import AgentRunResult, RunInput, drive
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, WaitStep
from .._tools import ToolOutcome
from ..messages import ModelMessage, ModelResponse
from ..models import Model, ModelSettings
from ..runs import RunInfo
from ..usage import UsageLimits
from ._codec import (
    STARTED_SUFFIX,
    STATUS_EVENT,
    RunFailed,
    decode_input,
    decode_result,
    encode_input,
    encode_result,
    error_record,
    output_adapter,
    run_error,
    workflow_name,
)
from ._inspect import ACTIVE, build_run_info, pending_of

__all__ = ["DBOSAgent"]

ENGINE = "dbos"

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

# A wait for a decision is one DBOS.recv of at most this long, repeated: a run may wait for days.
_RECV_SECONDS = 24 * 3600.0
# After a recovery replays a wait, how long recv may take to find an already-sent decision before the run is
# reported as waiting to callers in this process.
_REPLAY_GRACE = 0.2

_PERDURE_TO_DBOS = {
    "pending": ["ENQUEUED", "DELAYED"],
    "running": ["PENDING"],
    "waiting": ["PENDING", "ENQUEUED"],  # ENQUEUED: being recovered after a restart
    "completed": ["SUCCESS"],
    "failed": ["ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
    "cancelled": ["CANCELLED"],
}


def _dbos_instance() -> Any:
    from dbos import _dbos  # DBOS keeps its singleton here; there is no public accessor

    return _dbos._dbos_global_instance


def _dbos_registry() -> Any:
    from dbos import _dbos

    return _dbos._get_or_create_dbos_registry()


def _launched() -> bool:
    instance = _dbos_instance()
    return bool(instance is not None and getattr(instance, "_launched", False))


def _in_workflow() -> bool:
    """True in a DBOS workflow's own code (not in one of its steps)."""
    return DBOS.workflow_id is not None and DBOS.step_id is None


def _outside_workflow(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run a DBOS call as a plain call even from workflow code (so DBOS records it as no step of the run)."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # type: ignore[arg-type]


@dataclass
class _Start:
    """What ``run()`` hands to the workflow execution it starts in this process (never recorded)."""

    agent: DBOSAgent[Any, Any]
    deps: Any
    result: AgentRunResult[Any] | None = None


_START: contextvars.ContextVar[_Start | None] = contextvars.ContextVar("perdure_dbos_start", default=None)


@dataclass
class _Live:
    """A run this process knows about: executing here, and/or watched by ``run()`` callers here.

    ``run()`` callers in this process learn at once that a run executing here waits for a decision; for a run
    executing elsewhere they poll its status event.
    """

    executing: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    watchers: list[asyncio.Future[list[dict[str, Any]]]] = field(default_factory=list)


_LIVE: dict[str, _Live] = {}
_LIVE_LOCK = threading.Lock()


def _resolve(future: asyncio.Future[list[dict[str, Any]]], pending: list[dict[str, Any]]) -> None:
    if not future.done():
        future.set_result(pending)


def _set_executing(run_id: str, executing: bool) -> None:
    with _LIVE_LOCK:
        live = _LIVE.setdefault(run_id, _Live())
        live.executing = executing
        if not executing:
            live.pending = []
            if not live.watchers:
                del _LIVE[run_id]


def _publish_waiting(run_id: str, pending: list[dict[str, Any]]) -> None:
    with _LIVE_LOCK:
        live = _LIVE.get(run_id)
        if live is None:
            return
        live.pending = list(pending)
        watchers = list(live.watchers) if pending else []
    for future in watchers:
        future.get_loop().call_soon_threadsafe(_resolve, future, list(pending))


def _watch(run_id: str, future: asyncio.Future[list[dict[str, Any]]]) -> None:
    with _LIVE_LOCK:
        live = _LIVE.setdefault(run_id, _Live())
        live.watchers.append(future)
        if live.pending:
            future.set_result(list(live.pending))


def _unwatch(run_id: str, future: asyncio.Future[list[dict[str, Any]]]) -> None:
    with _LIVE_LOCK:
        live = _LIVE.get(run_id)
        if live is not None:
            live.watchers = [w for w in live.watchers if w is not future]
            if not live.watchers and not live.executing:
                del _LIVE[run_id]


def _executing_here(run_id: str) -> bool:
    with _LIVE_LOCK:
        live = _LIVE.get(run_id)
        return live is not None and live.executing


class _Steps:
    """Executes (or lets DBOS replay) the steps of one execution of one run, inside its workflow.

    DBOS matches a step to its record by position (its function id), so the ids of concurrent steps are drawn
    in a fixed order, sorted by tool call id, before any of them starts: replay is correct whatever order
    they finish in. ``execute`` is a plain function returning an awaitable so that it sees a whole batch of
    parallel steps before the first one runs.
    """

    def __init__(self, owner: DBOSAgent[Any, Any], run_id: str, model: Model, deps: Any, prompt: str | None):
        self.owner = owner
        self.run_id = run_id
        self.model = model
        self.deps = deps
        self.prompt = prompt
        self._queued: list[Step] = []
        self._plans: dict[str, Callable[[], Awaitable[StepResult]]] = {}
        self.replayed = 0

    def execute(self, step: Step) -> Awaitable[StepResult]:
        self._queued.append(step)
        return self._run(step.key)

    async def _run(self, key: str) -> StepResult:
        if key not in self._plans:
            self._plan()
        return await self._plans.pop(key)()

    def _plan(self) -> None:
        group = sorted(self._queued, key=lambda s: getattr(s, "tool_call_id", s.key))
        self._queued.clear()
        waits = [s for s in group if isinstance(s, WaitStep)]
        if waits:
            decisions = asyncio.ensure_future(self._decide(waits))
            for w in waits:
                self._plans[w.key] = functools.partial(self._decision, decisions, w.key)
        for s in group:
            if isinstance(s, ModelStep):
                self._plans[s.key] = functools.partial(self._model, s)
            elif isinstance(s, ToolStep):
                slots = [DBOS.reserve_step() for _ in range(2 if s.side_effects == "at_most_once" else 1)]
                self._plans[s.key] = functools.partial(self._tool, s, slots)

    async def _record(
        self,
        step: Step,
        name: str,
        fn: Callable[[], Awaitable[dict[str, Any]]],
        *,
        slot: Any = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One DBOS step named ``name``; its recorded ``describe`` must be the one the loop asks for now."""
        opts = {**(options or {}), "name": name}
        ran = False

        async def body() -> dict[str, Any]:
            nonlocal ran
            ran = True
            return await fn()

        try:
            if slot is not None:
                recorded: dict[str, Any] = await slot.run_async(opts, body)
            else:
                recorded = await DBOS.run_step_async(opts, body)
        except dbos_error.DBOSUnexpectedStepError as e:
            raise await self._diverged(step, e) from None
        if not ran and name == step.key:
            self.replayed += 1
        if recorded.get("d") != step.describe():
            raise NonDeterminismError(
                run_id=self.run_id, step_key=step.key, recorded=str(recorded.get("d")), requested=step.describe()
            )
        return recorded

    async def _diverged(self, step: Step, e: Any) -> NonDeterminismError:
        """The run recorded another step at this position: the agent's code now takes another path."""
        _, step_id, _, recorded_name = e.inputs
        recorded = f"the step {recorded_name!r}"
        try:
            steps = await _outside_workflow(DBOS.list_workflow_steps_async(self.run_id))
            for s in steps:
                if s["function_id"] == step_id and isinstance(s["output"], dict) and s["output"].get("d"):
                    recorded = str(s["output"]["d"])
        except Exception:
            pass  # the message names the recorded step either way
        key = recorded_name if str(recorded_name).startswith("turn/") else step.key
        if key.endswith(STARTED_SUFFIX):
            key = key[: -len(STARTED_SUFFIX)]
        return NonDeterminismError(run_id=self.run_id, step_key=key, recorded=recorded, requested=step.describe())

    async def _model(self, step: ModelStep) -> ModelResponse:
        fresh: list[ModelResponse | Exception] = []
        describe = step.describe()

        async def request() -> dict[str, Any]:
            try:
                response = await perform_model_step(self.model, step, self.owner.agent.retry_config)
            except Exception as e:  # a failed request is recorded too: replay fails the same way
                fresh.append(e)
                return {"d": describe, "e": error_record(e)}
            fresh.append(response)
            return {"d": describe, "r": response.model_dump_json()}

        recorded = await self._record(step, step.key, request, options=self.owner._model_step_options)
        if fresh:
            if isinstance(fresh[0], Exception):
                raise fresh[0]
            return fresh[0]
        if "e" in recorded:
            raise error_from_record(recorded["e"])
        return ModelResponse.model_validate_json(recorded["r"])

    async def _tool(self, step: ToolStep, slots: list[Any]) -> ToolOutcome:
        fresh: list[ToolOutcome] = []
        describe = step.describe()
        started_here = False
        if step.side_effects == "at_most_once":

            async def mark() -> dict[str, Any]:
                nonlocal started_here
                started_here = True
                return {"d": describe}

            await self._record(step, step.key + STARTED_SUFFIX, mark, slot=slots[0])

        async def call() -> dict[str, Any]:
            if step.side_effects == "at_most_once" and not started_here:
                # Started by an execution that died before recording the result: never run it again.
                outcome = ToolOutcome(kind="unknown")
            else:
                outcome = await perform_tool_step(
                    self.owner.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt
                )
            fresh.append(outcome)
            return {"d": describe, "r": outcome.model_dump_json()}

        recorded = await self._record(step, step.key, call, slot=slots[-1])
        return fresh[0] if fresh else ToolOutcome.model_validate_json(recorded["r"])

    async def _decision(self, decisions: asyncio.Future[dict[str, Decision]], key: str) -> Decision:
        return (await decisions)[key]

    async def _decide(self, waits: list[WaitStep]) -> dict[str, Decision]:
        """Record the waits, publish them as pending, then receive one decision per wait, in order."""
        pending: list[dict[str, Any]] = []
        fresh = False
        for w in waits:
            payload = {
                "run_id": self.run_id,
                "tool_call_id": w.tool_call_id,
                "tool_name": w.tool_name,
                "args": w.args,
                "reason": w.reason,
                "key": w.key,
            }

            async def mark(payload: dict[str, Any] = payload, describe: str = w.describe()) -> dict[str, Any]:
                nonlocal fresh
                fresh = True
                return {"d": describe, "p": {**payload, "since": time.time()}}

            recorded = await self._record(w, w.key, mark)
            pending.append(recorded["p"])
        await DBOS.set_event_async(STATUS_EVENT, {"status": "waiting", "pending": list(pending)})
        if fresh:
            _publish_waiting(self.run_id, pending)
        decisions: dict[str, Decision] = {}
        for w in waits:
            receive = asyncio.ensure_future(self._receive(w.key))
            if not fresh:
                # A recovery replayed this wait: the decision may have been sent meanwhile.
                await asyncio.wait({receive}, timeout=_REPLAY_GRACE)
                if not receive.done():
                    _publish_waiting(self.run_id, pending)
            decisions[w.key] = Decision.model_validate(await receive)
            pending = [p for p in pending if p["key"] != w.key]
            await DBOS.set_event_async(
                STATUS_EVENT, {"status": "waiting" if pending else "running", "pending": pending}
            )
            _publish_waiting(self.run_id, pending)
        return decisions

    async def _receive(self, topic: str) -> Any:
        while True:
            message = await DBOS.recv_async(topic, timeout_seconds=_RECV_SECONDS)
            if message is not None:
                return message


class DBOSAgent(Generic[DepsT, OutputT]):
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

    * No ``resume``/``recover``: launching DBOS recovers the pending runs of the process's executor id
      (``DBOSConfig["executor_id"]``, default ``"local"``; on several machines give each a stable one, or let DBOS
      Conductor reassign the runs of a machine that is gone). ``wait(run_id)`` awaits a run executing anywhere.
    * ``get_run``/``list_runs`` are coroutines (``get_run_sync``/``list_runs_sync`` without an event loop).
    * A decision is delivered when the run takes it: until then ``get_run`` still shows the call pending. A run
      waiting for a decision is a ``PENDING`` workflow to DBOS (it holds a slot of a queue's concurrency).
    * ``deps`` given to ``run()`` serve the execution started by that call; recovered and dequeued executions get
      the ``deps`` (or ``deps_factory``) given here.

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
        poll_interval: how often ``run()`` and ``wait()`` poll the database for a run executing elsewhere.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        name: str | None = None,
        deps: DepsT | None = None,
        deps_factory: Callable[[str], DepsT] | None = None,
        step_config: dict[str, Any] | None = None,
        queue: str = "perdure",
        poll_interval: float = 0.2,
    ) -> None:
        if not isinstance(agent, Agent):
            raise UserError(f"DBOSAgent wraps an Agent, not {type(agent).__name__}")
        name = name or agent.name
        if not name:
            raise UserError(
                "a DBOS agent needs a name: its runs are the DBOS workflow 'perdure:<name>', which a restarted "
                "process must find again. Pass Agent(..., name='support') or DBOSAgent(agent, name='support')"
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
        if _launched():
            raise UserError(
                f"DBOSAgent({name!r}) was constructed after DBOS.launch(): DBOS recovers only the workflows "
                "registered when it launches. Construct every DBOSAgent first (e.g. at import time), then call "
                "DBOS.launch()"
            )
        self.agent = agent
        self.name: str = name
        self.workflow_name = workflow_name(name)
        registry = _dbos_registry()
        if self.workflow_name in registry.workflow_info_map:
            raise UserError(
                f"an agent named {name!r} is already registered with DBOS (workflow {self.workflow_name!r}); "
                "two agents cannot share a name, or a recovered run would execute with the wrong one. Give each "
                "agent its own name (Agent(..., name=...) or DBOSAgent(agent, name=...))"
            )
        self.deps = deps
        self.deps_factory = deps_factory
        self.queue = queue
        self.poll_interval = poll_interval
        self._model_step_options: dict[str, Any] = {"preemptible": True, **(step_config or {})}
        self._output_adapter = output_adapter(agent.output_type)
        self._queues_ready: set[str] = set()

        async def perdure_run(run: dict[str, Any]) -> dict[str, Any]:
            return await self._execute(run)

        self._workflow = DBOS.workflow(name=self.workflow_name)(perdure_run)

    def __repr__(self) -> str:
        return f"DBOSAgent({self.name!r})"

    # --- the workflow -----------------------------------------------------------------------------------

    async def _execute(self, data: dict[str, Any]) -> dict[str, Any]:
        from ..observability._spans import run_attempt  # OpenTelemetry loads with the first run, not on import

        run_id = DBOS.workflow_id
        assert run_id is not None
        start = _START.get()
        _START.set(None)  # a tool that runs another agent does not hand it this run's deps
        if start is not None and start.agent is not self:
            start = None
        deps = start.deps if start is not None and start.deps is not None else self._default_deps(run_id)
        run = decode_input(run_id, data)
        _set_executing(run_id, True)
        try:
            model = self.agent.resolve_model(run.model_name)
            steps = _Steps(self, run_id, model, deps, run.prompt)
            # Started here by run(): the first attempt. Recovered or dequeued: DBOS counts the attempts.
            attempt = 1 if start is not None else await self._attempt(run_id)
            with run_attempt(
                self.agent,
                run_id=run_id,
                engine=ENGINE,
                attempt=attempt,
                trace_context=data.get("trace_context"),
                model=model.model_name,
                prompt=run.prompt,
                count_replayed=lambda: steps.replayed,
            ) as observed:
                result = await drive(self.agent.new_loop(run, deps, model), steps.execute)
                observed.set_result(result)
        except Exception as e:
            # DBOS records the workflow's error; RunFailed keeps perdure's error record in a picklable shape.
            raise RunFailed.wrap(e) from e
        finally:
            _set_executing(run_id, False)
        if start is not None:
            start.result = result
        return encode_result(result)

    @staticmethod
    async def _attempt(run_id: str) -> int:
        status = await _outside_workflow(DBOS.get_workflow_status_async(run_id))
        return max(1, int(getattr(status, "recovery_attempts", None) or 1))

    def _default_deps(self, run_id: str) -> Any:
        if self.deps_factory is not None:
            return self.deps_factory(run_id)
        return self.deps

    # --- starting runs ------------------------------------------------------------------------------------

    async def run(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT | None = None,
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
        approvals included (raising ``RunWaiting`` would end your workflow). Its run id defaults to one DBOS
        derives from your workflow's, so a recovery of your workflow finds the same run.
        """
        handle, start = await self._start(
            prompt, run_id, deps, message_history, model, usage_limits, model_settings, queue=None
        )
        return await self._result(handle, start, watch=not _in_workflow())

    def run_sync(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """``run`` for code without an event loop."""
        _no_running_loop("run_sync")
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
        queue: str | None = None,
    ) -> str:
        """Enqueue a run on a DBOS queue and return its id at once; any process that launched DBOS with this agent
        registered executes it (with that process's ``deps``). ``wait(run_id)`` awaits its result.
        """
        handle, _ = await self._start(
            prompt, run_id, None, message_history, model, usage_limits, model_settings, queue=queue or self.queue
        )
        return str(handle.get_workflow_id())

    async def _start(
        self,
        prompt: str | None,
        run_id: str | None,
        deps: Any,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
        *,
        queue: str | None,
    ) -> tuple[Any, _Start | None]:
        self._require_launched()
        if model is not None and not isinstance(model, str):
            raise UserError("a durable run records its model by name: pass a model string, e.g. 'openai:gpt-4.1'")
        if run_id is None and not _in_workflow():
            run_id = new_run_id()  # in a workflow, DBOS derives the id from the workflow's (replay-safe)
        if run_id is not None and (not isinstance(run_id, str) or not run_id or len(run_id) > 200):
            raise UserError(f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}")
        run = RunInput(
            prompt=prompt,
            run_id=run_id or "",
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model_name=model,
        )
        data = encode_input(run, self.agent.fingerprint())
        data["trace_context"] = _accept_trace_context(self.name, run_id)
        start = _Start(self, deps) if queue is None else None
        token = _START.set(start)
        try:
            if queue is not None:
                await self._ensure_queue(queue)
            with SetWorkflowID(run_id) if run_id is not None else _nothing():
                if queue is not None:
                    handle = await DBOS.enqueue_workflow_async(queue, self._workflow, data)
                else:
                    handle = await DBOS.start_workflow_async(self._workflow, data)
        except dbos_error.DBOSConflictingWorkflowError as e:
            raise UserError(f"run {run_id!r} exists and is not a run of agent {self.name!r}: {e.detail}") from None
        finally:
            _START.reset(token)
        return handle, start

    async def _ensure_queue(self, queue: str) -> None:
        if queue in self._queues_ready:
            return
        if await DBOS.retrieve_queue_async(queue) is None:
            await DBOS.register_queue_async(queue, on_conflict="never_update")
        self._queues_ready.add(queue)

    def _require_launched(self) -> None:
        if not _launched():
            raise UserError(
                "DBOS is not launched: create DBOS(config=...), construct every DBOSAgent, then call "
                "DBOS.launch() before running"
            )

    # --- results ------------------------------------------------------------------------------------------

    async def _result(self, handle: Any, start: _Start | None, *, watch: bool) -> AgentRunResult[OutputT]:
        run_id = str(handle.get_workflow_id())
        try:
            if watch:
                data = await self._await_or_waiting(run_id, handle)
            else:
                data = await handle.get_result(polling_interval_sec=self.poll_interval)
        except RunFailed as e:
            raise e.to_error() from None
        except (dbos_error.DBOSAwaitedWorkflowCancelledError, dbos_error.DBOSWorkflowCancelledError):
            raise RunCancelled(f"run {run_id!r} was cancelled") from None
        except dbos_error.DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded as e:
            raise AgentRunError(f"run {run_id!r} failed: {e}") from None
        except PortableWorkflowError as e:  # a system database with DBOS's portable serializer
            raise run_error(e) from None
        if start is not None and start.result is not None:
            return start.result
        return decode_result(run_id, data, self._output_adapter)

    async def _await_or_waiting(self, run_id: str, handle: Any) -> Any:
        """The run's result; ``RunWaiting`` as soon as the run waits for a decision, wherever it executes."""
        loop = asyncio.get_running_loop()
        result = asyncio.ensure_future(handle.get_result(polling_interval_sec=self.poll_interval))
        waiting: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        _watch(run_id, waiting)
        delay = 0.02
        try:
            while True:
                await asyncio.wait({result, waiting}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                if result.done():
                    return result.result()
                if waiting.done():
                    raise RunWaiting(run_id, waiting.result())
                if not _executing_here(run_id):
                    pending = pending_of(await DBOS.get_event_async(run_id, STATUS_EVENT, timeout_seconds=0))
                    if pending:
                        raise RunWaiting(run_id, pending)
                delay = min(delay * 2, self.poll_interval)
        finally:
            _unwatch(run_id, waiting)
            if not result.done():
                result.cancel()

    async def wait(self, run_id: str, *, timeout: float | None = None) -> AgentRunResult[OutputT]:
        """Wait until a run (executed by any process) finishes; its result. Raises its error if it failed.

        A run waiting for a decision is waited through: this returns once it is decided and finished.
        """
        self._require_launched()
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            raise UserError(f"no run {run_id!r} in the DBOS system database")
        if status.name != self.workflow_name:
            raise UserError(f"run {run_id!r} is not a run of agent {self.name!r} (workflow {status.name!r})")
        handle = await DBOS.retrieve_workflow_async(run_id)
        return await asyncio.wait_for(self._result(handle, None, watch=False), timeout)

    # --- decisions and cancellation -------------------------------------------------------------------------

    async def approve(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        """Decide on a waiting call, from any process: the run continues wherever DBOS executes it."""
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            raise UserError(f"no run {run_id!r} in the DBOS system database")
        event = await _status_event(status)
        key = decision_topic(run_id, status.status, event, tool_call_id)
        message = Decision(approved=approved, note=note).model_dump(mode="json")
        await DBOS.send_async(run_id, message, key, idempotency_key=f"{run_id}/{key}")

    def approve_sync(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        _no_running_loop("approve_sync")
        asyncio.run(self.approve(run_id, tool_call_id, approved=approved, note=note))

    async def cancel(self, run_id: str) -> None:
        """Cancel a run from any process: it stops at its next step boundary (status ``cancelled``)."""
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            raise UserError(f"no run {run_id!r} in the DBOS system database")
        await DBOS.cancel_workflow_async(run_id)

    def cancel_sync(self, run_id: str) -> None:
        _no_running_loop("cancel_sync")
        asyncio.run(self.cancel(run_id))

    # --- inspection -------------------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's status, steps (with timings), usage, error and pending decisions."""
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            raise UserError(f"no run {run_id!r} in the DBOS system database")
        steps = await DBOS.list_workflow_steps_async(run_id)
        return build_run_info(status, steps, await _status_event(status))

    def get_run_sync(self, run_id: str) -> RunInfo:
        _no_running_loop("get_run_sync")
        return asyncio.run(self.get_run(run_id))

    async def list_runs(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        """This agent's runs, newest first (without their steps)."""
        wanted = [status] if isinstance(status, str) else list(status or [])
        unknown = [s for s in wanted if s not in _PERDURE_TO_DBOS]
        if unknown:
            raise UserError(f"unknown run status {unknown[0]!r}; one of: {', '.join(_PERDURE_TO_DBOS)}")
        dbos_statuses = sorted({d for s in wanted for d in _PERDURE_TO_DBOS[s]}) or None
        out: list[RunInfo] = []
        offset = 0
        while len(out) < limit:
            page = await DBOS.list_workflows_async(
                name=self.workflow_name, status=dbos_statuses, sort_desc=True, limit=limit, offset=offset
            )
            for wf in page:
                info = build_run_info(wf, None, await _status_event(wf))
                if not wanted or info.status in wanted:
                    out.append(info)
            if len(page) < limit:
                break
            offset += limit
        return out[:limit]

    def list_runs_sync(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        _no_running_loop("list_runs_sync")
        return asyncio.run(self.list_runs(status=status, limit=limit))


def _accept_trace_context(agent: str, run_id: str | None) -> dict[str, str] | None:
    """The trace the run belongs to, recorded with its input: every attempt, in any process, continues it."""
    from ..observability._spans import accept_trace_context

    return accept_trace_context(agent_name=agent, run_id=run_id or "", engine=ENGINE)


async def _status_event(status: Any) -> Any:
    """The run's published status (only a run that is not finished can be waiting)."""
    if status.status not in ACTIVE:
        return None
    return await DBOS.get_event_async(status.workflow_id, STATUS_EVENT, timeout_seconds=0)


def decision_topic(run_id: str, dbos_status: str, event: Any, tool_call_id: str) -> str:
    """The topic a decision on ``tool_call_id`` is sent to: the waiting step's key. UserError if none waits."""
    pending = pending_of(event) if dbos_status in ACTIVE else []
    for p in pending:
        if p.get("tool_call_id") == tool_call_id:
            return str(p["key"])
    waiting = ", ".join(f"{p.get('tool_name')} ({p.get('tool_call_id')})" for p in pending) or "none"
    raise UserError(
        f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision (DBOS status {dbos_status}); "
        f"waiting: {waiting}"
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UserError(f"{name}() cannot be called from a running event loop; await the async method instead")
