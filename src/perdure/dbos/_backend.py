"""``DBOSBackend``: the caller's side of the DBOS engine (accept, resume, wait, recover) and the run workflow.

A run is a DBOS workflow whose id is the run id and whose one argument is the run's input. Accepting a run starts
the workflow (``run()``: in this process, with the caller's deps) or enqueues it (``start()``: on a DBOS queue,
for any process that registered the agent). DBOS records the workflow before it executes: accepted = durable.
The workflow's code drives the agent loop through the shared ``StepRunner`` over a ``DBOSStore``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbos import DBOS, PortableWorkflowError, SetWorkflowID
from dbos import error as dbos_error

from .._exceptions import AgentRunError, RunCancelled, RunWaiting, UserError
from .._loop import AgentRunResult, RunInput
from ..durable.codec import decode_run_result, encode_run_result, output_adapter
from ..durable.ports import ClaimLost, RunMeta
from ..durable.runner import StepRunner, run_attempt
from ._admin import ACTIVE_STATUSES, DBOSAdmin, database_errors
from ._codec import RunFailed, decode_input, encode_input, run_error
from ._inspect import pending_of
from ._live import LIVE
from ._names import STATUS_EVENT, workflow_name
from ._store import DBOSStore, outside_workflow

if TYPE_CHECKING:
    from .._agent import Agent

__all__ = ["DBOSBackend", "in_workflow", "launched"]

ENGINE = "dbos"

log = logging.getLogger("perdure.dbos")


def _dbos_instance() -> Any:
    from dbos import _dbos  # DBOS keeps its singleton here; there is no public accessor

    return _dbos._dbos_global_instance


def launched() -> bool:
    instance = _dbos_instance()
    return bool(instance is not None and getattr(instance, "_launched", False))


def in_workflow() -> bool:
    """True in a DBOS workflow's own code (not in one of its steps)."""
    return DBOS.workflow_id is not None and DBOS.step_id is None


@dataclass
class _Start:
    """What ``run()`` hands to the workflow execution it starts in this process (never recorded): the caller's
    deps (given once ``resume`` is called) and, back, the live result."""

    backend: DBOSBackend
    deps: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    result: AgentRunResult[Any] | None = None


_START: contextvars.ContextVar[_Start | None] = contextvars.ContextVar("perdure_dbos_start", default=None)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class DBOSBackend:
    """Runs of one agent, as workflows ``perdure:<name>`` of the launched DBOS."""

    engine = ENGINE

    def __init__(
        self,
        agent: Agent[Any, Any],
        name: str,
        *,
        deps: Any,
        deps_factory: Callable[[str], Any] | None,
        model_options: Mapping[str, Any],
        queue: str,
        poll_interval: float,
    ) -> None:
        self.agent = agent
        self.name = name
        self.workflow_name = workflow_name(name)
        self.deps = deps
        self.deps_factory = deps_factory
        self.model_options = dict(model_options)
        self.queue = queue
        self.poll_interval = poll_interval
        self.admin = DBOSAdmin(DBOS, where="the DBOS system database", workflow=self.workflow_name)
        self._adapter = output_adapter(agent.output_type)
        self._queues_ready: set[str] = set()
        self._started: dict[str, tuple[Any, _Start]] = {}

        async def perdure_run(run: dict[str, Any]) -> dict[str, Any]:
            return await self.execute(run)

        self.workflow = DBOS.workflow(name=self.workflow_name)(perdure_run)

    def require_launched(self) -> None:
        if not launched():
            raise UserError(
                "DBOS is not launched: create DBOS(config=...), construct every DBOSAgent, then call "
                "DBOS.launch() before running"
            )

    # --- accepting ------------------------------------------------------------------------------------------

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        self.require_launched()
        with database_errors(self.admin.where):
            status = await DBOS.get_workflow_status_async(run.run_id)
            if status is not None:
                self._check_name(run.run_id, status)
                return False
            data = encode_input(run, meta.fingerprint, meta.trace_context(run.run_id, ENGINE))
            if start:
                await self._start(run.run_id, data)
            else:
                await self._enqueue(run.run_id, data)
        return True

    def _check_name(self, run_id: str, status: Any) -> None:
        if status.name != self.workflow_name:
            raise UserError(
                f"run {run_id!r} exists and is not a run of agent {self.name!r} (it is DBOS workflow "
                f"{status.name!r}); use another run id"
            )

    async def _start(self, run_id: str | None, data: dict[str, Any]) -> tuple[Any, _Start]:
        start = _Start(self)
        token = _START.set(start)
        try:
            with SetWorkflowID(run_id) if run_id is not None else _nothing():
                handle = await DBOS.start_workflow_async(self.workflow, data)
        except dbos_error.DBOSConflictingWorkflowError as e:
            raise UserError(f"run {run_id!r} exists and is not a run of agent {self.name!r}: {e.detail}") from None
        except BaseException:
            if not start.deps.done():
                start.deps.set_result(None)
            raise
        finally:
            _START.reset(token)
        if run_id is not None:
            self._started[run_id] = (handle, start)
        return handle, start

    async def _enqueue(self, run_id: str, data: dict[str, Any]) -> None:
        if self.queue not in self._queues_ready:
            if await DBOS.retrieve_queue_async(self.queue) is None:
                await DBOS.register_queue_async(self.queue, on_conflict="never_update")
            self._queues_ready.add(self.queue)
        with SetWorkflowID(run_id):
            await DBOS.enqueue_workflow_async(self.queue, self.workflow, data)

    # --- results ----------------------------------------------------------------------------------------------

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        """The run's result; ``RunWaiting`` as soon as it waits for a decision, wherever it executes.

        DBOS executes the run: the execution this process started (``run()``), or the one DBOS's recovery or a
        queue started anywhere. Nothing here takes a run over from the process executing it.
        """
        self.require_launched()
        started = self._started.pop(run_id, None)
        if started is not None:
            handle, start = started
            if not start.deps.done():
                start.deps.set_result(deps)
            return await self._result(handle, start, watch=not in_workflow())
        with database_errors(self.admin.where):
            status = await DBOS.get_workflow_status_async(run_id)
            if status is None:
                raise UserError(f"no run {run_id!r} in {self.admin.where}")
            self._check_name(run_id, status)
            handle = await DBOS.retrieve_workflow_async(run_id)
        return await self._result(handle, None, watch=not in_workflow())

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        """Wait until the run finishes, decisions included (``RunWaiting`` is never raised)."""
        self.require_launched()
        with database_errors(self.admin.where):
            status = await DBOS.get_workflow_status_async(run_id)
            if status is None:
                raise UserError(f"no run {run_id!r} in {self.admin.where}")
            self._check_name(run_id, status)
            handle = await DBOS.retrieve_workflow_async(run_id)
        return await asyncio.wait_for(self._result(handle, None, watch=False), timeout)

    async def recover(self, deps: Any) -> list[str]:
        """The runs of this agent that DBOS's recovery (at launch) or a queue is executing for this process's
        executor, once each has finished or waits for a decision. Nothing is taken over from another process."""
        self.require_launched()
        with database_errors(self.admin.where):
            found = await DBOS.list_workflows_async(
                name=self.workflow_name,
                status=list(ACTIVE_STATUSES),
                executor_id=DBOS.executor_id,
                load_input=False,
                load_output=False,
            )
        ids = [str(w.workflow_id) for w in found]

        async def one(run_id: str) -> None:
            try:
                await self.resume(run_id, deps, fresh=False)
            except (AgentRunError, RunWaiting, UserError):
                pass

        await asyncio.gather(*(one(r) for r in ids))
        return ids

    async def run_child(self, run: RunInput, run_id: str | None, deps: Any) -> AgentRunResult[Any]:
        """``run()`` inside the caller's own workflow: a child workflow, awaited through decisions. Without a
        run id DBOS derives one from the caller's workflow, so a recovery of that workflow finds the same run."""
        self.require_launched()
        data = encode_input(run, self.agent.fingerprint(), None)
        handle, start = await self._start(run_id, data)
        self._started.pop(str(handle.get_workflow_id()), None)
        start.deps.set_result(deps)
        return await self._result(handle, start, watch=False)

    async def _result(self, handle: Any, start: _Start | None, *, watch: bool) -> AgentRunResult[Any]:
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
        return decode_run_result(run_id, data, self._adapter)

    async def _await_or_waiting(self, run_id: str, handle: Any) -> Any:
        """The run's result; ``RunWaiting`` as soon as the run waits for a decision, wherever it executes."""
        loop = asyncio.get_running_loop()
        result = asyncio.ensure_future(handle.get_result(polling_interval_sec=self.poll_interval))
        waiting: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        LIVE.watch(run_id, waiting)
        delay = 0.02
        try:
            while True:
                await asyncio.wait({result, waiting}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                if result.done():
                    return result.result()
                if waiting.done():
                    raise RunWaiting(run_id, waiting.result())
                if not LIVE.executing(run_id):
                    pending = pending_of(await DBOS.get_event_async(run_id, STATUS_EVENT, timeout_seconds=0))
                    if pending:
                        raise RunWaiting(run_id, pending)
                delay = min(delay * 2, self.poll_interval)
        finally:
            LIVE.unwatch(run_id, waiting)
            if not result.done():
                result.cancel()

    # --- the workflow -----------------------------------------------------------------------------------

    async def execute(self, data: dict[str, Any]) -> dict[str, Any]:
        """The code of the run's workflow: one execution (an attempt) of the run."""
        from ..observability._spans import run_attempt as observed_attempt

        run_id = DBOS.workflow_id
        assert run_id is not None
        start = _START.get()
        _START.set(None)  # a tool that runs another agent does not hand it this run's deps
        if start is not None and start.backend is not self:
            start = None
        deps = await start.deps if start is not None else self._default_deps(run_id)
        if deps is None and start is not None:
            deps = self._default_deps(run_id)
        run = decode_input(run_id, data)
        status = None if start is not None else await outside_workflow(DBOS.get_workflow_status_async(run_id))
        # Started here by run(): the first attempt. Recovered or dequeued: DBOS counts the attempts.
        attempt = 1 if status is None else max(1, int(getattr(status, "recovery_attempts", None) or 1))
        runner: StepRunner | None = None
        task = asyncio.current_task()

        def lost(_: str) -> None:
            # Stop everything in flight (tool calls too), and a wait for a decision: the run is another's now.
            if runner is not None:
                runner.abandon(ClaimLost(run_id, getattr(status, "executor_id", None)))
            if task is not None:
                task.cancel()

        token, previous = LIVE.begin(run_id, getattr(status, "dequeued_at", None), lost)
        _watch_owners(self.poll_interval)
        try:
            if previous is not None:
                await previous  # the execution it replaces here has stopped: never two at once in one process
            if attempt > 1:
                # Taking the run over: the execution that had it may still be alive elsewhere (two processes with
                # one executor id). Its ownership watch stops it within one poll interval; give it two.
                await asyncio.sleep(2 * self.poll_interval)
            model = self.agent.resolve_model(run.model_name)
            store = DBOSStore(run_id, agent_name=self.name, model_options=self.model_options)
            runner = StepRunner(
                self.agent, store, run_id=run_id, attempt=attempt, model=model, deps=deps, prompt=run.prompt
            )
            counted = runner
            with observed_attempt(
                self.agent,
                run_id=run_id,
                engine=ENGINE,
                attempt=attempt,
                trace_context=data.get("trace_context"),
                model=model.model_name,
                prompt=run.prompt,
                count_replayed=lambda: len(counted.replayed),
            ) as observed:
                end = await run_attempt(self.agent, run, runner)
                if end.status == "lost":
                    # DBOS's own signal for an execution that lost its workflow: it records nothing more.
                    raise dbos_error.DBOSWorkflowConflictIDError(run_id)
                result = end.raise_or_return()
                observed.set_result(result)
        except ClaimLost:
            raise dbos_error.DBOSWorkflowConflictIDError(run_id) from None
        except Exception as e:
            # DBOS records the workflow's error; RunFailed keeps perdure's error record in a picklable shape.
            raise RunFailed.wrap(e) from e
        finally:
            LIVE.end(run_id, token)
        if start is not None:
            start.result = result
        return encode_run_result(result)

    def _default_deps(self, run_id: str) -> Any:
        if self.deps_factory is not None:
            return self.deps_factory(run_id)
        return self.deps


# --- the ownership watch (see _live) -----------------------------------------------------------------------------

_WATCHES: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def _watch_owners(interval: float) -> None:
    loop = asyncio.get_running_loop()
    task = _WATCHES.get(loop)
    if task is not None and not task.done():
        return
    # An empty context: the watch is no part of the workflow that started it.
    _WATCHES[loop] = loop.create_task(_watch(interval), context=contextvars.Context())


async def _watch(interval: float) -> None:
    try:
        while True:
            await asyncio.sleep(interval)
            ids = LIVE.executing_ids()
            if not ids:
                return
            try:
                found = await DBOS.list_workflows_async(workflow_ids=ids, load_input=False, load_output=False)
            except Exception:
                continue  # the database is away for a moment: DBOS's own fencing still guards every write
            LIVE.check_owners({str(w.workflow_id): w for w in found})
    finally:
        _WATCHES.pop(asyncio.get_running_loop(), None)
