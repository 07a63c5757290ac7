"""Inside a run's flow run: executing or replaying each step as a Prefect task with a cached result.

``Executor.execute`` is what the agent loop calls for each step. A model request or tool call becomes a call of
the step kind's Prefect task, whose cache key is built from (run id, step key) only: when the step is recorded
the task is a cache hit and its body never runs; otherwise the body (``Executor.perform``) checks the step
boundary (cancellation, a path the run left), executes the step with the engine-neutral ``perform_*`` functions
and returns the record that Prefect persists. Waits for human decisions suspend the flow run (``_decide``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pydantic
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import StateType
from prefect.context import AsyncClientContext, TaskRunContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput as PrefectRunInput
from prefect.results import get_result_store

from .._engine import perform_model_step, perform_tool_step
from .._exceptions import (
    ModelHTTPError,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
)
from .._loop import AgentRunResult
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, WaitStep, model_key
from .._tools import ToolOutcome
from ..durable.owner import this_owner
from ..messages import ModelResponse
from ..models import Model
from ..observability import engine as telemetry
from . import _names as names

if TYPE_CHECKING:
    from ._agent import PrefectAgent

ENGINE = "prefect"
RECORD_VERSION = 1


@dataclass
class Attempt:
    """Hands one execution's in-process arguments to the flow body, and its ending back to the caller."""

    deps: Any
    fresh: bool
    number: int = 1
    result: AgentRunResult[Any] | None = None
    error: BaseException | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


# Flow runs executing in this process (by Prefect flow run id): never two executions of one run at once.
ATTEMPTS: dict[UUID, Attempt] = {}


class Call:
    """A task's argument: an opaque object, so Prefect neither traverses nor records the step (its history)."""

    __slots__ = ("cache_key", "executor", "step")

    def __init__(self, executor: Executor, step: Step) -> None:
        self.executor = executor
        self.step = step
        self.cache_key = names.step_cache_key(executor.run_id, step.key)


class ToolRaised(Exception):
    """A tool raised and its task has retries left: Prefect retries it (the last attempt records the error)."""


def cache_key(context: Any, parameters: dict[str, Any]) -> str:
    call: Call = parameters["call"]
    return call.cache_key


def should_retry(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retries a failed task unless retrying cannot help."""
    error = state.data
    if isinstance(error, ModelHTTPError):
        return error.transient
    if isinstance(error, ToolRaised):
        return True
    # Cancellation, non-determinism, exhausted output retries, developer errors: the same again.
    return not isinstance(error, PerdureError)


async def model_request(step_key: str, call: Call) -> dict[str, Any]:
    """Prefect task body: one model request (runs only when the step has no recorded result)."""
    return await call.executor.perform(call.step)


async def tool_call(step_key: str, call: Call) -> dict[str, Any]:
    """Prefect task body: one tool call (runs only when the step has no recorded result)."""
    return await call.executor.perform(call.step)


def record_of(step: Step, result: StepResult, started: float, attempt: int) -> dict[str, Any]:
    """What a step's task persists: its tagged result and what the step was (checked on replay)."""
    return {
        "v": RECORD_VERSION,
        "key": step.key,
        "kind": step.kind,
        "describe": step.describe(),
        "result": result.model_dump(mode="json"),
        "attempt": attempt,
        "started_at": started,
        "finished_at": time.time(),
    }


def decode(step: Step, data: Any) -> StepResult:
    if isinstance(step, ModelStep):
        return ModelResponse.model_validate(data)
    if isinstance(step, ToolStep):
        return ToolOutcome.model_validate(data)
    return Decision.model_validate(data)


def is_conflict(error: PrefectHTTPStatusError) -> bool:
    return getattr(error.response, "status_code", None) == 409


def approval_input(steps: Sequence[WaitStep]) -> type[Any]:
    """The Prefect run input a suspension waits for: one decision per waiting call (a form in Prefect's UI)."""
    fields: dict[str, Any] = {}
    lines = ["The agent is waiting for decisions on these tool calls:", ""]
    for i, step in enumerate(steps):
        what = "approve" if step.reason == "approval" else "confirm it happened"
        title = f"{step.tool_name}({json.dumps(step.args)})"
        fields[f"call_{i}"] = (
            Decision,
            pydantic.Field(title=title, description=f"call {step.tool_call_id}: {what}?"),
        )
        lines.append(f"- `call_{i}`: **{step.tool_name}** `{json.dumps(step.args)}` (call `{step.tool_call_id}`)")
    model: type[Any] = pydantic.create_model("Decisions", __base__=PrefectRunInput, **fields)
    return model.with_initial_data(description="\n".join(lines))  # type: ignore[no-any-return]


class WaitGroup:
    """The waits of one batch (parallel calls needing approval): they suspend the flow run once, together."""

    def __init__(self, first: WaitStep) -> None:
        self.steps = [first]
        self.done: asyncio.Future[dict[str, Decision]] = asyncio.get_running_loop().create_future()


class Executor:
    """Executes or replays the steps of one execution of one run, inside the run's flow run."""

    def __init__(
        self,
        prefect_agent: PrefectAgent[Any, Any],
        run_id: str,
        flow_run_id: UUID,
        client: Any,
        model: Model,
        deps: Any,
        prompt: str | None,
        *,
        fresh: bool,
        attempt: int = 1,
    ) -> None:
        self.pa = prefect_agent
        self.run_id = run_id
        self.flow_run_id = flow_run_id
        self.client = client
        self.model = model
        self.deps = deps
        self.prompt = prompt
        self.fresh = fresh  # created by this call: nothing can be recorded ahead of the loop
        self.attempt = attempt
        self.cancelled = False
        self._state_read = time.monotonic()  # the flow run was claimed (read and set) just before this
        self.executed: set[str] = set()
        self.replayed = 0
        self.pending: list[dict[str, Any]] = []
        self._inflight: set[asyncio.Future[Any]] = set()
        self._group: WaitGroup | None = None

    def cancel(self) -> None:
        self.cancelled = True
        for future in self._inflight:
            future.cancel()  # an in-flight model request is abandoned

    def _cancelled_error(self) -> RunCancelled:
        return RunCancelled(f"run {self.run_id!r} was cancelled")

    # --- the loop's side ----------------------------------------------------------------------------------

    async def execute(self, step: Step) -> StepResult:
        if self.cancelled:
            raise self._cancelled_error()
        if isinstance(step, WaitStep):
            return await self._wait(step)
        task = self.pa._task_for(step)
        future: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(task(step.key, Call(self, step)))
        self._inflight.add(future)
        try:
            record = await future
        except asyncio.CancelledError:
            if self.cancelled:
                raise self._cancelled_error() from None
            raise
        finally:
            self._inflight.discard(future)
        if step.key not in self.executed:
            self.replayed += 1  # a cache hit: the task body did not run
        return self.accept(step, record)

    def accept(self, step: Step, record: Mapping[str, Any]) -> StepResult:
        """A step's record (executed now or replayed): it must be the step the loop asks for."""
        if record.get("kind") != step.kind or record.get("describe") != step.describe():
            raise NonDeterminismError(
                run_id=self.run_id,
                step_key=step.key,
                recorded=str(record.get("describe")),
                requested=step.describe(),
            )
        return decode(step, record["result"])

    # --- the task's side (runs only when a step has no recorded result) ----------------------------------

    async def perform(self, step: Step) -> dict[str, Any]:
        started = time.time()
        await self._before_executing(step)
        self.executed.add(step.key)
        result: StepResult
        if isinstance(step, ModelStep):
            result = await perform_model_step(self.model, step, self.pa.agent.retry_config)
        else:
            assert isinstance(step, ToolStep)
            result = await self._tool(step)
        return record_of(step, result, started, self.attempt)

    async def _before_executing(self, step: Step) -> None:
        """A step boundary: stop if the run was cancelled; refuse to run a step of a path the run left.

        The watcher notices a cancellation within ``poll_interval``; a boundary reads the run's state itself when
        its last read is older than that (after a long step, say), so steps that follow each other quickly cost
        no request each, and a step that ran long is never followed by another once the run is cancelled.
        """
        if self.cancelled:
            raise self._cancelled_error()
        if time.monotonic() - self._state_read >= self.pa.poll_interval:
            self._state_read = time.monotonic()
            flow_run = await self.client.read_flow_run(self.flow_run_id)
            if flow_run.state is not None and flow_run.state.type in (StateType.CANCELLING, StateType.CANCELLED):
                self.cancelled = True
                raise self._cancelled_error()
        if self.fresh:
            return
        # A new step at turn T while turn T+1 is recorded: the loop no longer takes the recorded path.
        ahead = model_key(step.turn + 1)
        store = await self.pa._store(self.pa._model_config.result_storage)
        key = names.step_cache_key(self.run_id, ahead)
        if await store.aexists(key):
            recorded = (await store.aread(key)).result
            raise NonDeterminismError(
                run_id=self.run_id, step_key=ahead, recorded=str(recorded.get("describe")), requested=step.describe()
            )

    async def _tool(self, step: ToolStep) -> ToolOutcome:
        if step.side_effects == "at_most_once":
            store = get_result_store()  # this task's store
            mark = names.started_key(self.run_id, step.key)
            if await store.aexists(mark):
                # An earlier attempt started this call and left no result: never run it again.
                return ToolOutcome(kind="unknown")
            await store.awrite(obj={"owner": this_owner(), "at": time.time()}, key=mark)
            return await perform_tool_step(self.pa.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt)
        outcome = await perform_tool_step(self.pa.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt)
        if outcome.kind == "error":
            context = TaskRunContext.get()
            if context is not None and context.task_run.run_count <= (context.task.retries or 0):
                raise ToolRaised(outcome.message or "the tool raised")
        return outcome

    # --- waiting for decisions --------------------------------------------------------------------------

    async def _wait(self, step: WaitStep) -> StepResult:
        # Waits yielded together (a batch) join one group before any of them awaits anything.
        group = self._group
        leader = group is None
        if group is None:
            group = self._group = WaitGroup(step)
        else:
            group.steps.append(step)
        if leader:
            await asyncio.sleep(0)  # the other waits of the batch join now
            self._group = None
            try:
                group.done.set_result(await self._decide(group.steps))
            except BaseException as e:  # Pause too: the whole batch suspends with its leader
                group.done.set_exception(e)
                raise
        decisions = await group.done
        return decisions[step.key]

    async def _decide(self, steps: list[WaitStep]) -> dict[str, Decision]:
        store = await self.pa._store(self.pa._config.result_storage)
        decided: dict[str, Decision] = {}
        for step in steps:
            key = names.step_cache_key(self.run_id, step.key)
            if await store.aexists(key):
                decision = self.accept(step, (await store.aread(key)).result)
                assert isinstance(decision, Decision)
                decided[step.key] = decision
        undecided = [s for s in steps if s.key not in decided]
        if not undecided:
            return decided
        started = time.time()
        pause = names.pause_key(undecided[0].key)
        calls = [
            {
                "index": i,
                "run_id": self.run_id,
                "tool_call_id": s.tool_call_id,
                "tool_name": s.tool_name,
                "args": s.args,
                "reason": s.reason,
                "key": s.key,
                "since": started,
            }
            for i, s in enumerate(undecided)
        ]
        try:
            await self.client.create_flow_run_input(
                self.flow_run_id, key=names.pending_input(pause), value=json.dumps(calls)
            )
        except PrefectHTTPStatusError as e:
            if not is_conflict(e):  # written by an earlier execution of this wait: the same calls
                raise
        else:
            for _ in calls:
                telemetry.approval_wait_started(agent_name=self.pa.agent.name, engine=ENGINE)
        self.pending = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        # Suspends the flow run (raises Pause: the process is free) or, once resumed, returns the decisions.
        answer = await asuspend_flow_run(wait_for_input=approval_input(undecided), key=pause, timeout=None)
        for i, step in enumerate(undecided):
            decision = Decision.model_validate(getattr(answer, f"call_{i}"), from_attributes=True)
            await store.awrite(
                obj=record_of(step, decision, started, self.attempt), key=names.step_cache_key(self.run_id, step.key)
            )
            decided[step.key] = decision
        return decided


class Watcher:
    """Per event loop: notices cancellations of the runs this process executes (one request per poll)."""

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.runs: dict[UUID, Executor] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, executor: Executor) -> None:
        self.runs[executor.flow_run_id] = executor
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def remove(self, executor: Executor) -> None:
        self.runs.pop(executor.flow_run_id, None)
        if not self.runs and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _watch(self) -> None:
        # A client of its own: the watcher outlives the run (and the client) that started it.
        async with AsyncClientContext() as context:
            client = context.client
            while self.runs:
                await asyncio.sleep(self.poll)
                ids = list(self.runs)
                try:
                    flow_runs = await client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
                    )
                except Exception:  # the server is busy or restarting: step boundaries still check
                    continue
                for flow_run in flow_runs:
                    executor = self.runs.get(flow_run.id)
                    state = flow_run.state
                    if executor and state and state.type in (StateType.CANCELLING, StateType.CANCELLED):
                        executor.cancel()
