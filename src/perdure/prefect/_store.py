"""Inside a run's flow run: ``PrefectStore``, where one attempt runs or replays its steps as cached Prefect tasks.

A model request or tool call is a call of its kind's Prefect task, whose cache key is built from (run id, step key)
only: when the step is recorded the task is a cache hit and its body never runs; otherwise the body checks the step
boundary (cancellation, the claim, a path the run left), runs the step and returns the record Prefect persists.
Parallel calls arrive as one batch: their tasks are submitted in the order of their step keys. Waits for human
decisions suspend the flow run.

Fencing. Each attempt owns the run by a claim (see ``_runs.claim``) and records itself as the run's owner. Before a
step executes, and always before an at-most-once call acts, the attempt confirms that the run is still its own when
its last look is older than ``poll_interval`` (the watcher also looks every ``poll_interval``); a run claimed by
another process (or marked ``Crashed``) is given up at once: in-flight steps are cancelled, nothing more is written.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import pydantic
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.context import AsyncClientContext, TaskRunContext
from prefect.exceptions import Pause, PrefectHTTPStatusError
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput as PrefectRunInput
from prefect.results import get_result_store
from prefect.tasks import Task

from .._exceptions import ModelHTTPError, NonDeterminismError, PerdureError, RunCancelled
from .._ops import Decision, model_key, step_kind
from .._tools import ToolOutcome
from ..durable.codec import encode_result
from ..durable.ports import Body, ClaimLost, Done, Record, StepCall, Suspend, WaitCall
from ..observability import engine as telemetry
from ..runs import StepInfo
from . import _names as names
from . import _runs as runs
from ._config import ResultStores, TaskConfig, local_directory, storage_option

__all__ = ["PrefectStore", "RecordsStore", "TaskSet", "Watcher"]

log = logging.getLogger("perdure.prefect")


class Call:
    """A task's argument: an opaque object, so Prefect neither traverses nor records the step (its history)."""

    __slots__ = ("cache_key", "run")

    def __init__(self, cache_key: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.cache_key = cache_key
        self.run = run


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
    return await call.run()


async def tool_call(step_key: str, call: Call) -> dict[str, Any]:
    """Prefect task body: one tool call (runs only when the step has no recorded result)."""
    return await call.run()


def tool_name_of(call: StepCall) -> str:
    """The tool a call step calls, from its description (``a call of tool 'charge'``): the Prefect task, and the
    task options, are per tool."""
    return str(ast.literal_eval(call.describe[len("a call of tool ") :]))


class TaskSet:
    """The Prefect task of each kind of step (one per tool), built once from the agent's task configs."""

    def __init__(self, config: TaskConfig, model_config: TaskConfig, tool_configs: Mapping[str, TaskConfig]) -> None:
        self.config = config
        self.model_config = model_config.merged_over(config)
        self.tool_configs = {k: v.merged_over(config) for k, v in tool_configs.items()}
        self._tasks: dict[str, Any] = {}

    def config_of(self, kind: str, tool_name: str | None = None) -> TaskConfig:
        if kind == "model":
            return self.model_config
        if kind == "tool" and tool_name is not None:
            return self.tool_configs.get(tool_name, self.config)
        return self.config

    def storages(self, kind: str) -> list[Any]:
        """Where records of a kind of step may be (a step's key names its kind, not its tool)."""
        if kind == "model":
            return [self.model_config.result_storage]
        return [self.config.result_storage, *(c.result_storage for c in self.tool_configs.values())]

    def directories(self) -> list[str]:
        """The local directories among the storages of the run's records (where ``prune`` deletes them)."""
        from prefect.blocks.core import Block

        configs = [self.config, self.model_config, *self.tool_configs.values()]
        storages = [c.result_storage for c in configs]
        return sorted({local_directory(s) for s in storages if s is not None and not isinstance(s, str | Block)})

    def task(self, kind: str, tool_name: str | None) -> Any:
        name = names.MODEL_TASK if kind == "model" else names.tool_task(tool_name or "")
        task = self._tasks.get(name)
        if task is None:
            config = self.config_of(kind, tool_name)
            own_storage = config.result_storage is not self.config.result_storage
            task = Task(
                fn=model_request if kind == "model" else tool_call,
                name=name,
                task_run_name="{step_key}",
                cache_key_fn=cache_key,
                persist_result=True,
                result_serializer="json",
                # Tasks share the flow's result store unless their own differs (resolved once per flow run).
                result_storage=storage_option(config.result_storage) if own_storage else None,
                retries=config.retries or 0,
                retry_delay_seconds=config.retry_delay_seconds or 0,
                retry_condition_fn=should_retry,
                timeout_seconds=config.timeout_seconds,
                log_prints=False,
            )
            self._tasks[name] = task
        return task


def record_of(call: StepCall | WaitCall, result: str, started: float) -> dict[str, Any]:
    """What a step persists: its tagged result and what the step was (checked on replay). Compatibility data."""
    kind = call.kind if isinstance(call, StepCall) else "wait"
    return {
        "v": names.RECORD_VERSION,
        "key": call.key,
        "kind": kind,
        "describe": call.describe,
        "result": json.loads(result),
        "attempt": call.attempt,
        "started_at": started,
        "finished_at": time.time(),
    }


def step_info(record: Mapping[str, Any], *, with_result: bool = False) -> StepInfo:
    """A step as its record tells it."""
    kind = step_kind(str(record["key"]))  # model, tool, approval or unknown, as every engine reports it
    tokens = (0, 0)
    if kind == "model":
        usage = (record.get("result") or {}).get("usage") or {}
        tokens = (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
    return StepInfo(
        key=str(record["key"]),
        kind=kind,
        status="done",
        attempt=int(record.get("attempt", 1)),
        started_at=float(record.get("started_at") or 0.0),
        finished_at=record.get("finished_at"),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        describe=str(record.get("describe", "")),
        result=record.get("result") if with_result else None,
    )


def as_record(key: str, record: Mapping[str, Any]) -> Record:
    """A persisted record as the runner takes it back (it checks the kind and the description)."""
    return Record(
        key=key,
        kind=str(record.get("kind")),
        describe=str(record.get("describe")),
        status="done",
        result=json.dumps(record["result"]),
        attempt=int(record.get("attempt", 1)),
    )


def decision_of(run_id: str, call: WaitCall, record: Mapping[str, Any]) -> Decision:
    """A recorded decision, which must be the decision on this call."""
    if record.get("kind") != "wait" or record.get("describe") != call.describe:
        raise NonDeterminismError(
            run_id=run_id, step_key=call.key, recorded=str(record.get("describe")), requested=call.describe
        )
    return Decision.model_validate(record["result"])


def approval_input(calls: Sequence[WaitCall]) -> type[Any]:
    """The Prefect run input a suspension waits for: one decision per waiting call (a form in Prefect's UI)."""
    fields: dict[str, Any] = {}
    lines = ["The agent is waiting for decisions on these tool calls:", ""]
    for i, call in enumerate(calls):
        what = "approve" if call.reason == "approval" else "confirm it happened"
        title = f"{call.tool_name}({json.dumps(call.args)})"
        fields[f"call_{i}"] = (
            Decision,
            pydantic.Field(title=title, description=f"call {call.tool_call_id}: {what}?"),
        )
        lines.append(f"- `call_{i}`: **{call.tool_name}** `{json.dumps(call.args)}` (call `{call.tool_call_id}`)")
    model: type[Any] = pydantic.create_model("Decisions", __base__=PrefectRunInput, **fields)
    return model.with_initial_data(description="\n".join(lines))  # type: ignore[no-any-return]


async def _unknown_outcome() -> Done:
    return Done(encode_result(ToolOutcome(kind="unknown")))


class PrefectStore:
    """The steps of one attempt of one run, as cached Prefect tasks of the run's flow run (the ``StepStore`` port).

    Prefect replays natively (a recorded step is a cache hit), so ``recorded`` is empty and every step's record comes
    back from ``step``; the runner checks its description.
    """

    def __init__(
        self,
        *,
        run_id: str,
        flow_run_id: UUID,
        client: Any,
        tasks: TaskSet,
        stores: ResultStores,
        owner: str,
        attempt: int,
        fresh: bool,
        poll_interval: float,
        agent_name: str | None,
    ) -> None:
        self.run_id = run_id
        self.flow_run_id = flow_run_id
        self.client = client
        self.tasks = tasks
        self.stores = stores
        self.owner = owner
        self.attempt = attempt
        self.fresh = fresh  # created by this call: nothing can be recorded ahead of the loop
        self.poll_interval = poll_interval
        self.agent_name = agent_name
        self.cancelled = False
        self.lost: ClaimLost | None = None
        self.on_cancel: Callable[[], None] = lambda: None
        self.on_lost: Callable[[ClaimLost], None] = lambda e: None
        self.steps: dict[str, StepInfo] = {}
        """Every step this attempt executed, replayed, or waits for: the run's steps as the run itself saw them."""
        self.pending: list[dict[str, Any]] = []
        self.pause: Pause | None = None
        """Prefect's signal that the flow run is suspended, raised again out of the flow (Prefect expects it)."""
        self._looked = time.monotonic()  # the flow run was claimed (read and set) just before this

    # --- the StepStore port ---------------------------------------------------------------------------------

    @property
    def recorded(self) -> Mapping[str, Record]:
        return {}

    def cancel_requested(self) -> bool:
        if self.lost is not None:
            raise self.lost
        return self.cancelled

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        return await self._task(call, body, interrupted or _unknown_outcome)

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        """Parallel calls: their tasks are submitted in the order of their step keys, then run concurrently."""
        order = sorted(range(len(calls)), key=lambda i: calls[i].key)
        outcomes = await asyncio.gather(
            *(self._task(calls[i], bodies[i], _unknown_outcome) for i in order), return_exceptions=True
        )
        by_index = dict(zip(order, outcomes, strict=True))
        for i in range(len(calls)):
            outcome = by_index[i]
            if isinstance(outcome, BaseException):
                raise outcome
        return [by_index[i] for i in range(len(calls))]  # type: ignore[misc]

    async def wait(self, calls: Sequence[WaitCall]) -> dict[str, Decision]:
        """Decisions recorded for these calls; the rest suspend the flow run together (no process waits)."""
        store = await self.stores.get(self.tasks.config.result_storage)
        decided: dict[str, Decision] = {}
        for call in calls:
            key = names.step_cache_key(self.run_id, call.key)
            if await store.aexists(key):
                record = (await store.aread(key)).result
                decided[call.key] = decision_of(self.run_id, call, record)
                self.steps[call.key] = step_info(record, with_result=True)
        undecided = [c for c in calls if c.key not in decided]
        if not undecided:
            return decided
        started = time.time()
        pause = names.pause_key(undecided[0].key)
        waits = [
            {
                "run_id": self.run_id,
                "tool_call_id": c.tool_call_id,
                "tool_name": c.tool_name,
                "args": c.args,
                "reason": c.reason,
                "key": c.key,
                "since": started,
            }
            for c in undecided
        ]
        try:
            await self.client.create_flow_run_input(
                self.flow_run_id,
                key=names.pending_input(pause),
                value=json.dumps([{"index": i, **w} for i, w in enumerate(waits)]),
            )
        except PrefectHTTPStatusError as e:
            if not runs.is_conflict(e):  # written by an earlier execution of this wait: the same calls
                raise
        else:
            for _ in waits:
                telemetry.approval_wait_started(agent_name=self.agent_name, engine=runs.ENGINE)
        self.pending = waits
        try:
            # Suspends the flow run (raises Pause: the process is free) or, once resumed, returns the decisions.
            answer = await asuspend_flow_run(wait_for_input=approval_input(undecided), key=pause, timeout=None)
        except Pause as e:
            self.pause = e
            for c in undecided:
                self.steps[c.key] = StepInfo(c.key, step_kind(c.key), "waiting", 0, started, None, 0, 0, c.describe)
            raise Suspend([c.key for c in undecided]) from None
        for i, call in enumerate(undecided):
            decision = Decision.model_validate(getattr(answer, f"call_{i}"), from_attributes=True)
            record = record_of(call, decision.model_dump_json(), started)
            await store.awrite(obj=record, key=names.step_cache_key(self.run_id, call.key))
            decided[call.key] = decision
            self.steps[call.key] = step_info(record, with_result=True)
        return decided

    # --- one step, one task -----------------------------------------------------------------------------------

    async def _task(self, call: StepCall, body: Body, interrupted: Body) -> Record:
        tool = tool_name_of(call) if call.kind == "tool" else None
        task = self.tasks.task(call.kind, tool)
        started = time.time()

        async def run() -> dict[str, Any]:
            nonlocal started
            started = time.time()
            await self._before_executing(call)
            if call.at_most_once:
                done = await self._at_most_once(call, body, interrupted)
            else:
                done = await body()
            if call.kind == "tool" and json.loads(done.result).get("kind") == "error":
                context = TaskRunContext.get()
                if context is not None and context.task_run.run_count <= (context.task.retries or 0):
                    raise ToolRaised("the tool raised")  # Prefect retries the task; its last try records the error
            if time.monotonic() - self._looked >= self.poll_interval:
                # A long step (or a process stopped in the middle of it): the run must still be this attempt's
                # before Prefect records the result, or another process's record of the same step is overwritten.
                await self.confirm_owner()
            return record_of(call, done.result, started)

        try:
            record: dict[str, Any] = await task(call.key, Call(names.step_cache_key(self.run_id, call.key), run))
        except Exception:
            if self.lost is None and not self.cancelled:
                self.steps[call.key] = StepInfo(
                    call.key, call.kind, "failed", self.attempt, started, time.time(), 0, 0, call.describe
                )
            raise
        failed = call.kind == "tool" and (record.get("result") or {}).get("kind") == "error"
        self.steps[call.key] = step_info(record, with_result=failed)  # a failure shows with its traceback
        return as_record(call.key, record)

    async def _at_most_once(self, call: StepCall, body: Body, interrupted: Body) -> Done:
        store = get_result_store()  # this task's store
        mark = names.started_key(self.run_id, call.key)
        if await store.aexists(mark):
            return await interrupted()  # an earlier attempt started this call and left no result: never again
        await store.awrite(obj={"owner": self.owner, "at": time.time()}, key=mark)
        return await body()

    async def _before_executing(self, call: StepCall) -> None:
        """A step boundary: stop if the run was cancelled or claimed by another process; refuse to run a step of a
        path the run left.

        The watcher looks at the run every ``poll_interval``; a boundary looks itself when its last look is older
        (after a long step, say) and always before an at-most-once call acts, so steps that follow each other
        quickly cost no request each, and a run cancelled or taken over is never continued past the next step.
        """
        if self.lost is not None:
            raise self.lost
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id!r} was cancelled")
        if call.at_most_once or time.monotonic() - self._looked >= self.poll_interval:
            await self.confirm()
        if self.fresh:
            return
        # A new step at turn T while turn T+1 is recorded: the loop no longer takes the recorded path. (Prefect
        # replays by cache hits, so the runner cannot list the records up front; the store looks ahead itself.)
        turn = int(call.key.split("/")[1])
        ahead = model_key(turn + 1)
        store = await self.stores.get(self.tasks.model_config.result_storage)
        key = names.step_cache_key(self.run_id, ahead)
        if await store.aexists(key):
            recorded = (await store.aread(key)).result
            raise NonDeterminismError(
                run_id=self.run_id, step_key=ahead, recorded=str(recorded.get("describe")), requested=call.describe
            )

    # --- cancellation and the claim ---------------------------------------------------------------------------

    async def confirm(self) -> None:
        """Look at the run now: raise if it was cancelled, or claimed by another process."""
        self._looked = time.monotonic()
        self.observe(await self.client.read_flow_run(self.flow_run_id))
        if self.lost is not None:
            raise self.lost
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id!r} was cancelled")

    async def confirm_owner(self) -> None:
        """Before the attempt writes the run's ending: the run must still be this attempt's."""
        self._looked = time.monotonic()
        self.observe(await self.client.read_flow_run(self.flow_run_id))
        if self.lost is not None:
            raise self.lost

    def observe(self, flow_run: Any) -> None:
        """What the run's state says (read by a step boundary or the watcher): cancelled, or not ours any more."""
        state = flow_run.state
        if state is None or self.lost is not None:
            return
        if state.type in (StateType.CANCELLING, StateType.CANCELLED) and not self.cancelled:
            self.cancelled = True
            self.on_cancel()
        who = runs.owner(flow_run)
        if state.type == StateType.CRASHED or (who is not None and who != self.owner):
            self.lost = ClaimLost(self.run_id, who)
            log.warning(
                "run %r: this process (%s, attempt %d) lost its claim: %s took the run over while it stalled; "
                "it stops executing the run and writes nothing more",
                self.run_id,
                self.owner,
                self.attempt,
                who or "another process (Prefect marked it Crashed)",
            )
            self.on_lost(self.lost)


class RecordsStore:
    """A finished run's steps, read from the result storage: everything replays, nothing executes."""

    def __init__(self, run_id: str, tasks: TaskSet, stores: ResultStores) -> None:
        self.run_id = run_id
        self.tasks = tasks
        self.stores = stores

    @property
    def recorded(self) -> Mapping[str, Record]:
        return {}

    def cancel_requested(self) -> bool:
        return False

    async def _read(self, key: str, storage: Any, describe: str) -> dict[str, Any]:
        store = await self.stores.get(storage)
        cache = names.step_cache_key(self.run_id, key)
        if not await store.aexists(cache):
            raise NonDeterminismError(
                run_id=self.run_id, step_key=key, recorded="no such step (the run is finished)", requested=describe
            )
        record: dict[str, Any] = (await store.aread(cache)).result
        return record

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        tool = tool_name_of(call) if call.kind == "tool" else None
        record = await self._read(call.key, self.tasks.config_of(call.kind, tool).result_storage, call.describe)
        return as_record(call.key, record)

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        return [await self.step(c, b) for c, b in zip(calls, bodies, strict=True)]

    async def wait(self, calls: Sequence[WaitCall]) -> dict[str, Decision]:
        decided: dict[str, Decision] = {}
        for call in calls:
            record = await self._read(call.key, self.tasks.config.result_storage, call.describe)
            decided[call.key] = decision_of(self.run_id, call, record)
        return decided


class Watcher:
    """Per event loop: notices cancellations and lost claims of the runs this process executes (one request per
    poll for all of them)."""

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.runs: dict[UUID, PrefectStore] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, store: PrefectStore) -> None:
        self.runs[store.flow_run_id] = store
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def remove(self, store: PrefectStore) -> None:
        self.runs.pop(store.flow_run_id, None)
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
                except Exception:  # the server is busy or restarting: step boundaries still look
                    continue
                for flow_run in flow_runs:
                    store = self.runs.get(flow_run.id)
                    if store is not None:
                        store.observe(flow_run)
