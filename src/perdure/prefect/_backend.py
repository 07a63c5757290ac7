"""``PrefectBackend``: the caller's side of a Prefect run (accept, resume, wait, recover) and the flow that executes
one attempt of it, driving the shared ``StepRunner`` over a ``PrefectStore``.

Claims. A process executes a run only after claiming it out of the state it found it in: it creates the run input
``perdure-claim-<state id>``, which Prefect refuses to create twice, so of the processes that find a run scheduled,
crashed, or orphaned (its owner's process is gone) at the same moment exactly one executes it; the others get
``RunInProgress``. The winner then moves the run to ``Pending`` (its owner id in the message) and records itself as
the run's ``infrastructure_pid``; a process still executing the run from before (it stalled) sees that at its next
step boundary or watcher poll and stops (``_store``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import FlowRunContext
from prefect.exceptions import Abort, Pause
from prefect.flow_engine import run_flow_async
from prefect.flows import Flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Failed, Pending

from .._exceptions import (
    AgentRunError,
    PerdureError,
    RunCancelled,
    RunInProgress,
    RunWaiting,
    UserError,
    error_from_record,
)
from .._loop import AgentRunResult, RunInput
from ..durable.base import gather_quietly, poll_until_final
from ..durable.codec import encode_input, encode_output, input_from_dict
from ..durable.owner import this_owner
from ..durable.ports import ClaimLost, RunMeta
from ..durable.runner import StepRunner, run_attempt
from ..observability import engine as telemetry
from ..runs import RunInfo
from . import _names as names
from . import _runs as runs
from ._admin import PrefectAdmin, end_cancelled
from ._config import ResultStores, storage_option
from ._ephemeral import check_server
from ._store import PrefectStore, RecordsStore, TaskSet, Watcher

if TYPE_CHECKING:
    from .._agent import Agent

__all__ = ["PrefectBackend"]


class _QuietSuspensions(logging.Filter):
    """Prefect's flow engine logs the end of every flow run that is not completed at ERROR; a run suspended to wait
    for a human is the happy path of an approval, so that line is INFO here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Finished in state Suspended"):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("prefect.flow_runs").addFilter(_QuietSuspensions())


@dataclass
class Attempt:
    """Hands one execution's in-process arguments to the flow body, and its ending back to the caller."""

    deps: Any
    fresh: bool
    number: int = 1
    owner: str = field(default_factory=this_owner)
    result: AgentRunResult[Any] | None = None
    error: BaseException | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


class PrefectBackend:
    """Runs of one agent as flow runs of its flow, on the process's Prefect server."""

    engine = runs.ENGINE

    def __init__(self, agent: Agent[Any, Any], name: str, *, tasks: TaskSet, poll_interval: float) -> None:
        self.agent = agent
        self.name = name
        self.tasks = tasks
        self.poll_interval = poll_interval
        self.stores = ResultStores()
        self.admin = PrefectAdmin(flow=name, agent_name=agent.name, tasks=tasks, stores=self.stores)

        async def run_agent(run_id: str, prompt: str | None = None, options: dict[str, Any] | None = None) -> Any:
            return await self._flow_body(run_id, prompt, options or {})

        run_agent.__qualname__ = run_agent.__name__ = names.FLOW_FUNCTION
        try:
            self.flow: Any = Flow(
                fn=run_agent,
                name=name,
                description=f"perdure agent {name!r}: one flow run per agent run",
                validate_parameters=False,
                persist_result=False,  # the output is rebuilt from the steps' records
                result_storage=storage_option(tasks.config.result_storage),
                log_prints=False,
            )
        except Exception as e:  # an invalid flow name, a block that was not saved
            raise UserError(f"cannot build the Prefect flow for agent {name!r}: {e}") from e
        self._deployments: dict[str, UUID] = {}
        self._accepted: dict[str, Any] = {}
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher] = weakref.WeakKeyDictionary()

    async def _deployment(self, client: Any) -> UUID:
        """The id of this agent's deployment on the current server (created once per process)."""
        url = str(PREFECT_API_URL.value())
        deployment_id = self._deployments.get(url)
        if deployment_id is None:
            flow_id = await client.create_flow(self.flow)
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name=names.DEPLOYMENT,
                description="Runs of a perdure agent: started, resumed and approved through PrefectAgent.",
                tags=[names.TAG],
            )
            self._deployments[url] = deployment_id
        return deployment_id

    def _watcher(self) -> Watcher:
        loop = asyncio.get_running_loop()
        watcher = self._watchers.get(loop)
        if watcher is None:
            watcher = self._watchers[loop] = Watcher(self.poll_interval)
        return watcher

    # --- accepting ----------------------------------------------------------------------------------------

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        """Create the run's flow run (accepted = durable): its parameters hold the run's input, its idempotency
        key the run id, so a run id submitted twice is one flow run. True if this call created it."""
        check_server()
        nonce = uuid4().hex
        # Its accept_run span is reported only if the run is new (a duplicate submission reports nothing).
        acceptance = telemetry.accept_run(agent_name=self.agent.name, run_id=run.run_id, engine=runs.ENGINE)
        context: dict[str, Any] = {
            "agent": meta.agent,
            "fingerprint": meta.fingerprint,
            "nonce": nonce,
            # Every attempt, in any process, continues the trace the run was accepted in.
            "trace_context": acceptance.trace_context,
        }
        if directories := self.tasks.directories():
            context["storage"] = directories  # so that any admin prunes the run's records with it
        parent = FlowRunContext.get()
        tags = [names.TAG]
        if parent is not None and parent.flow_run is not None:  # called inside the user's own flow
            context["parent_flow_run_id"] = str(parent.flow_run.id)
            tags.append(f"{names.PARENT_TAG}{parent.flow_run.id}")
        options: dict[str, Any] = json.loads(encode_input(run))
        options.pop("prompt", None)
        async with runs.client() as client:
            flow_run = await client.create_flow_run_from_deployment(
                await self._deployment(client),
                parameters={"run_id": run.run_id, "prompt": run.prompt, "options": options},
                name=run.run_id,
                idempotency_key=run.run_id,
                tags=tags,
                context={names.CONTEXT: context},
            )
        created = runs.context_of(flow_run).get("nonce") == nonce
        if created:
            acceptance.commit()
            telemetry.run_started(agent_name=self.agent.name, engine=runs.ENGINE)
        if start:
            self._accepted[run.run_id] = flow_run  # resume() goes on from here, without reading it again
        return created

    # --- executing ------------------------------------------------------------------------------------------

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        check_server()
        async with runs.client() as client:
            flow_run = self._accepted.pop(run_id, None) or await self.admin.require(client, run_id)
            return await self._continue(client, flow_run, deps, fresh=fresh)

    async def _continue(self, client: Any, flow_run: Any, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        run_id = str(flow_run.idempotency_key)
        kind = runs.kind(flow_run)
        if kind == StateType.COMPLETED:
            return await self._replay(flow_run, deps)
        if kind == StateType.FAILED:
            raise await self._recorded_error(client, flow_run)
        if kind == StateType.CANCELLED:
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if kind == StateType.PAUSED:
            raise RunWaiting(run_id, [p.__dict__ for p in await runs.pending(client, flow_run)])
        if kind == StateType.CANCELLING:
            if not runs.orphaned(flow_run):
                raise RunInProgress(run_id, runs.owner(flow_run))
            await end_cancelled(client, flow_run, agent_name=self.agent.name)
            raise RunCancelled(f"run {run_id!r} was cancelled")
        executing = kind in (StateType.PENDING, StateType.RUNNING)
        if flow_run.id in runs.EXECUTING or (executing and not runs.orphaned(flow_run)):
            raise RunInProgress(run_id, runs.owner(flow_run))
        # Scheduled, resumed after a decision, crashed, or orphaned: claimed here, by one process only.
        owner = this_owner()
        if not await runs.claim(client, flow_run, owner):
            raise RunInProgress(run_id)
        claimed = await client.set_flow_run_state(
            flow_run.id,
            Pending(message=names.CLAIMED_BY + owner),
            force=executing,  # no transition leads out of these to Pending; the claim above made this one ours
        )
        if claimed.status != SetStateStatus.ACCEPT:
            raise RunInProgress(run_id)
        await client.update_flow_run(flow_run.id, infrastructure_pid=owner)
        flow_run.state = claimed.state
        number = 1 if fresh else await runs.attempts(client, flow_run)
        return await self._execute(flow_run, Attempt(deps=deps, fresh=fresh, number=number, owner=owner))

    async def _execute(self, flow_run: Any, attempt: Attempt) -> AgentRunResult[Any]:
        run_id = str(flow_run.idempotency_key)
        if flow_run.id in runs.EXECUTING:
            raise RunInProgress(run_id, attempt.owner)
        runs.EXECUTING[flow_run.id] = attempt
        try:
            # perdure suspends a run from inside it (at a wait step), never from outside; the flow engine starts
            # a watcher for suspensions from outside (a thread and a websocket, which blocks the event loop as
            # it starts and stops) for every flow run it sees with a deployment. It sees this run without one.
            unobserved = flow_run.model_copy(update={"deployment_id": None})
            state = await run_flow_async(
                self.flow, flow_run=unobserved, parameters=flow_run.parameters, return_type="state"
            )
        except Pause:
            raise RunWaiting(run_id, attempt.pending) from None
        except Abort:
            raise attempt.error or ClaimLost(run_id) from None
        finally:
            runs.EXECUTING.pop(flow_run.id, None)
        if attempt.error is not None:
            raise attempt.error
        if attempt.result is not None:
            return attempt.result
        if state is not None and state.type in (StateType.CANCELLED, StateType.CANCELLING):
            raise RunCancelled(f"run {run_id!r} was cancelled")
        message = getattr(state, "message", None) or "no message"
        raise AgentRunError(f"run {run_id!r} ended in Prefect state {getattr(state, 'name', state)!r}: {message}")

    async def _flow_body(self, run_id: str, prompt: str | None, options: dict[str, Any]) -> Any:
        """The flow: one attempt of the run, each step a cached task; how it ended, recorded with the run."""
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        flow_run_id = context.flow_run.id
        client = context.client
        # Executed by something else than ``resume`` (Prefect's own runner, say): an attempt with no deps.
        attempt = runs.EXECUTING.get(flow_run_id) or Attempt(deps=None, fresh=False)
        watcher = self._watcher()
        store: PrefectStore | None = None
        ended = False  # how the attempt ended is recorded (or it must not be: a lost claim)
        try:
            run = input_from_dict(run_id, {**options, "prompt": prompt})
            model = self.agent.resolve_model(run.model_name)
            store = PrefectStore(
                run_id=run_id,
                flow_run_id=flow_run_id,
                client=client,
                tasks=self.tasks,
                stores=self.stores,
                owner=attempt.owner,
                attempt=attempt.number,
                fresh=attempt.fresh,
                poll_interval=self.poll_interval,
                agent_name=self.agent.name,
            )
            runner = StepRunner(
                self.agent, store, run_id=run_id, attempt=attempt.number, model=model, deps=attempt.deps, prompt=prompt
            )
            store.on_cancel = runner.cancel
            store.on_lost = runner.abandon
            watcher.add(store)
            with telemetry.run_attempt(
                self.agent,
                run_id=run_id,
                engine=runs.ENGINE,
                attempt=attempt.number,
                trace_context=runs.context_of(context.flow_run).get("trace_context"),
                model=model.model_name,
                prompt=prompt,
                new_run=False,  # counted when accepted
                suspend=(Pause,),
                count_replayed=_counter(runner),
            ) as observed:
                end = await run_attempt(self.agent, run, runner)
                ended = True
                if end.status == "waiting":
                    await runs.write_input(client, flow_run_id, names.STEPS_INPUT, _steps(store))
                    attempt.pending = store.pending
                    assert store.pause is not None
                    raise store.pause  # Prefect's flow engine ends a suspended flow run on it
                if end.status in ("completed", "cancelled", "failed"):
                    await store.confirm_owner()  # a process that lost the run writes no ending
                if end.status == "completed":
                    assert end.result is not None
                    output = json.loads(encode_output(end.result.output))
                    usage = end.result.usage().__dict__
                    await self._record_outcome(client, store, {"status": "completed", "output": output, "usage": usage})
                    observed.set_result(end.result)
                    attempt.result = end.result
                    return output
                if end.status in ("cancelled", "failed"):
                    await self._record_outcome(client, store, {"status": end.status, "error": end.record})
                assert end.error is not None
                raise end.error
        except (Pause, asyncio.CancelledError):
            raise
        except ClaimLost as e:
            attempt.error = e
            raise Abort(str(e)) from None  # the flow engine writes no state: the run is another process's now
        except RunCancelled as e:
            attempt.error = e
            return Cancelled(message=str(e))
        except Exception as e:
            error = (
                e if isinstance(e, PerdureError) else AgentRunError(f"run {run_id!r} failed: {type(e).__name__}: {e}")
            )
            if error is not e:
                error.__cause__ = e
            if not ended:  # failed before the attempt could begin (an unknown model, say)
                record = (
                    error.to_record()
                    if isinstance(e, PerdureError)
                    else {"type": type(e).__name__, "message": str(error)}
                )
                await runs.write_input(client, flow_run_id, names.OUTCOME_INPUT, {"status": "failed", "error": record})
            attempt.error = error
            # A failed run is a Failed flow run; returned, not raised, so that Prefect logs no traceback of it.
            return Failed(message=str(error))
        finally:
            if store is not None:
                watcher.remove(store)

    async def _record_outcome(self, client: Any, store: PrefectStore, outcome: dict[str, Any]) -> None:
        """How the run ended, with its steps, before the flow run's final state: any process reads it with the run."""
        await runs.write_input(client, store.flow_run_id, names.OUTCOME_INPUT, {**outcome, "steps": _steps(store)})

    async def _recorded_error(self, client: Any, flow_run: Any) -> PerdureError:
        outcome = await runs.read_input(client, flow_run.id, names.OUTCOME_INPUT)
        if outcome and outcome.get("error"):
            return error_from_record(outcome["error"])
        message = flow_run.state.message if flow_run.state is not None else None
        return AgentRunError(f"run {flow_run.idempotency_key!r} failed in Prefect: {message or 'no message'}")

    async def _replay(self, flow_run: Any, deps: Any) -> AgentRunResult[Any]:
        """Rebuild a finished run's result (output, messages, usage) from its records; nothing executes."""
        run_id = str(flow_run.idempotency_key)
        params = flow_run.parameters
        run = input_from_dict(run_id, {**(params.get("options") or {}), "prompt": params.get("prompt")})
        model = self.agent.resolve_model(run.model_name)
        store = RecordsStore(run_id, self.tasks, self.stores)
        runner = StepRunner(self.agent, store, run_id=run_id, attempt=0, model=model, deps=deps, prompt=run.prompt)
        end = await run_attempt(self.agent, run, runner)
        return end.raise_or_return()

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        await poll_until_final(self._status, run_id, timeout, self.poll_interval, f"agent {self.name!r}'s runs")
        return await self.resume(run_id, deps, fresh=False)

    async def _status(self, run_id: str) -> RunInfo | None:
        async with runs.client() as client:
            flow_run = await runs.find(client, run_id, self.name)
            return None if flow_run is None else await self.admin.info(client, flow_run, with_steps=False)

    async def recover(self, deps: Any) -> list[str]:
        check_server()
        types = [StateType.SCHEDULED, StateType.CRASHED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
        async with runs.client() as client:
            found = await runs.flow_runs(client, flow=self.name, types=types, limit=200)
        ids = [
            str(fr.idempotency_key)
            for fr in found
            if fr.id not in runs.EXECUTING
            and (fr.state.type in (StateType.SCHEDULED, StateType.CRASHED) or runs.orphaned(fr))
        ]
        await gather_quietly(ids, lambda run_id: self.resume(run_id, deps, fresh=False))
        return ids


def _steps(store: PrefectStore) -> list[dict[str, Any]]:
    return [s.__dict__ for s in sorted(store.steps.values(), key=lambda s: s.started_at)]


def _counter(runner: StepRunner) -> Callable[[], int]:
    return lambda: len(runner.replayed)
