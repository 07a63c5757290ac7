"""``PrefectAdmin``: the run-admin port over a Prefect server — inspect, decide, cancel and prune runs of
``PrefectAgent``s through Prefect's API alone, with no agent constructed (what the CLI uses).

``perdure.prefect.admin(api_url)`` builds one for every agent on a server; a ``PrefectAgent`` has one scoped to its
own flow, which also knows the agent's result storage (and so each step's description and tokens while a run
executes; a run that finished or waits carries its steps in its own run inputs, readable by any admin).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import TaskRunSort
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling

from .._exceptions import RunCancelled, UserError
from .._ops import Decision, step_kind
from ..observability import engine as telemetry
from ..runs import FINAL_STATUSES, PendingDecision, RunInfo, StepInfo
from ..usage import Usage
from . import _names as names
from . import _runs as runs
from ._config import ResultStores
from ._ephemeral import check_server
from ._store import TaskSet, step_info

__all__ = ["PrefectAdmin", "admin", "end_cancelled"]

_FINAL_TYPES = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED]


def admin(api_url: str | None = None) -> PrefectAdmin:
    """The runs of every ``PrefectAgent`` on the Prefect server at ``api_url`` (default: this process's
    ``PREFECT_API_URL``), e.g. ``admin("http://127.0.0.1:4200/api")``. No agent is needed."""
    return PrefectAdmin(api_url)


class PrefectAdmin:
    """Runs of ``PrefectAgent``s on one Prefect server: of one agent (``flow``), or of all of them."""

    engine = runs.ENGINE

    def __init__(
        self,
        api_url: str | None = None,
        *,
        flow: str | None = None,
        agent_name: str | None = None,
        tasks: TaskSet | None = None,
        stores: ResultStores | None = None,
    ) -> None:
        self.api_url = api_url
        self.flow = flow
        self.agent_name = agent_name
        """The agent's own name, for telemetry (default: the run's flow name)."""
        self.tasks = tasks
        self.stores = stores or ResultStores()

    def __repr__(self) -> str:
        where = self.api_url or "PREFECT_API_URL"
        return f"PrefectAdmin({where!r}" + (f", flow={self.flow!r})" if self.flow else ")")

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        if self.api_url is None:
            check_server()
            async with runs.client() as client:
                yield client
            return
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            async with get_client() as client:
                yield client

    async def require(self, client: Any, run_id: str) -> Any:
        flow_run = await runs.find(client, run_id, self.flow)
        if flow_run is None:
            of = f" of agent {self.flow!r}" if self.flow else ""
            raise UserError(f"no run {run_id!r}{of} on the Prefect server {self._where()}")
        return flow_run

    def _where(self) -> str:
        if self.api_url is not None:
            return self.api_url
        from prefect.settings import PREFECT_API_URL

        return str(PREFECT_API_URL.value())

    # --- reading -----------------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunInfo | None:
        async with self.client() as client:
            flow_run = await runs.find(client, run_id, self.flow)
            return None if flow_run is None else await self.info(client, flow_run, with_steps=True)

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        wanted = list(status or [])
        unknown = [s for s in wanted if s not in runs.STATE_TYPES]
        if unknown:
            raise UserError(f"unknown run status {unknown[0]!r}; one of {', '.join(sorted(runs.STATE_TYPES))}")
        types = sorted({t for s in wanted for t in runs.STATE_TYPES[s]}, key=lambda t: t.value) or None
        async with self.client() as client:
            found = await runs.flow_runs(client, flow=agent or self.flow, types=types, limit=limit)
            infos = [await self.info(client, fr, with_steps=False) for fr in found]
        return [i for i in infos if not wanted or i.status in wanted]

    async def stuck(self, older_than: float) -> list[RunInfo]:
        """Executing runs whose process is gone (on this machine) or that made no progress (no step started or
        finished, no state change) for ``older_than`` seconds; and started runs nobody picked up for that long."""
        import dataclasses

        cutoff = time.time() - older_than
        types = [*runs.STATE_TYPES["running"], *runs.STATE_TYPES["pending"]]
        out: list[RunInfo] = []
        async with self.client() as client:
            for flow_run in await runs.flow_runs(client, flow=self.flow, types=types, limit=None):
                info = await self.info(client, flow_run, with_steps=True)
                marks = [m for s in info.steps for m in (s.started_at, s.finished_at) if m is not None]
                last = max([*marks, info.updated_at])
                if runs.orphaned(flow_run) or last < cutoff:
                    out.append(dataclasses.replace(info, updated_at=last))
        return out

    async def pending(self, run_id: str) -> list[PendingDecision]:
        async with self.client() as client:
            return await runs.pending(client, await self.require(client, run_id))

    async def info(self, client: Any, flow_run: Any, *, with_steps: bool) -> RunInfo:
        run_id = str(flow_run.idempotency_key)
        status = runs.status(flow_run)
        outcome = await runs.read_input(client, flow_run.id, names.OUTCOME_INPUT) if status in FINAL_STATUSES else None
        steps = await self._steps(client, flow_run, status, outcome) if with_steps else []
        if outcome and outcome.get("usage"):
            usage = Usage(**outcome["usage"])
        else:
            usage = Usage(
                requests=sum(1 for s in steps if s.kind == "model" and s.status == "done"),
                input_tokens=sum(s.input_tokens for s in steps),
                output_tokens=sum(s.output_tokens for s in steps),
                tool_calls=sum(1 for s in steps if s.kind == "tool" and s.status == "done"),
            )
        context = runs.context_of(flow_run)
        state = flow_run.state
        if with_steps:  # executions so far, counted from the run's claims
            attempts = await runs.attempts(client, flow_run) if flow_run.start_time else 0
        else:  # listings take Prefect's own run count instead (no request per run)
            attempts = flow_run.run_count
        return RunInfo(
            run_id=run_id,
            agent=str(context.get("agent", self.flow or "")),
            status=status,
            prompt=(flow_run.parameters or {}).get("prompt"),
            attempts=attempts,
            created_at=runs.timestamp(flow_run.created) or 0.0,
            updated_at=max(
                runs.timestamp(flow_run.updated) or 0.0, runs.timestamp(getattr(state, "timestamp", None)) or 0.0
            ),
            finished_at=runs.timestamp(flow_run.end_time) if status in FINAL_STATUSES else None,
            owner=runs.owner(flow_run) if status == "running" else None,
            lease_expires=None,
            fingerprint=str(context.get("fingerprint", "")),
            usage=usage,
            output=(outcome or {}).get("output"),
            error=(outcome or {}).get("error"),
            steps=steps,
            pending=await runs.pending(client, flow_run),
            trace_context=context.get("trace_context"),
            cancel_requested=state is not None and state.type in (StateType.CANCELLING, StateType.CANCELLED),
        )

    async def _steps(self, client: Any, flow_run: Any, status: str, outcome: Any) -> list[StepInfo]:
        """The run's own account of its steps when it finished or waits (written by its last attempt, consistent
        at once); Prefect's task runs while it executes (they reach the server as events, a moment later)."""
        saved = (outcome or {}).get("steps")
        # Waiting, or decided and not executed since (scheduled): what the suspended attempt saw is still all.
        if saved is None and (status != "running" and runs.kind(flow_run) != StateType.CRASHED):
            saved = await runs.read_input(client, flow_run.id, names.STEPS_INPUT)
        if saved is not None:
            return [StepInfo(**s) for s in saved]
        return await self._live_steps(client, flow_run)

    async def _live_steps(self, client: Any, flow_run: Any) -> list[StepInfo]:
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
        for task_run in task_runs:  # an executed step wins over its later cache hits
            earlier = chosen.get(task_run.name)
            if earlier is None or (earlier.state_name == "Cached" and task_run.state_name != "Cached"):
                chosen[task_run.name] = task_run
        steps: list[StepInfo] = []
        for key, task_run in chosen.items():
            status = {StateType.COMPLETED: "done", StateType.RUNNING: "started"}.get(task_run.state_type, "failed")
            record = await self._record(run_id, key) if status == "done" else None
            if record is not None:
                steps.append(step_info(record))
                continue
            started = runs.timestamp(task_run.start_time) or runs.timestamp(task_run.expected_start_time) or 0.0
            attempt = max(1, task_run.flow_run_run_count)
            steps.append(
                StepInfo(key, step_kind(key), status, attempt, started, runs.timestamp(task_run.end_time), 0, 0, "")
            )
        # Waits are no tasks: the suspensions' run inputs name them, their records hold the decisions.
        suffix = names.pending_input("")
        for item in await client.filter_flow_run_input(
            flow_run.id, key_prefix=names.INPUT_PREFIX, limit=200, exclude_keys=set()
        ):
            if not item.key.endswith(suffix):
                continue
            for call in json.loads(item.value):
                record = await self._record(run_id, call["key"])
                if record is not None:
                    steps.append(step_info(record, with_result=True))
                else:
                    steps.append(
                        StepInfo(call["key"], step_kind(call["key"]), "waiting", 0, call["since"], None, 0, 0, "")
                    )
        return sorted(steps, key=lambda s: s.started_at)

    async def _record(self, run_id: str, step_key: str) -> dict[str, Any] | None:
        """A step's record, where this admin knows the agent's result storage (a façade's admin does)."""
        if self.tasks is None:
            return None
        key = names.step_cache_key(run_id, step_key)
        for storage in self.tasks.storages(step_kind(step_key)):
            store = await self.stores.get(storage)
            if await store.aexists(key):
                record: dict[str, Any] = (await store.aread(key)).result
                return record
        return None

    # --- decisions and cancellation -------------------------------------------------------------------

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None:
        """Record a decision on a waiting call. Once every call the run waits for is decided, the flow run is
        resumed in Prefect with the decisions as its run input; a ``resume`` (or a worker) then executes it."""
        async with self.client() as client:
            flow_run = await self.require(client, run_id)
            calls, decisions = await runs.waiting(client, flow_run)
            index = next((i for i, c in enumerate(calls) if c.tool_call_id == tool_call_id), None)
            if index is None or index in decisions:
                waiting = ", ".join(
                    f"{c.tool_name} ({c.tool_call_id})" for i, c in enumerate(calls) if i not in decisions
                )
                raise UserError(
                    f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision "
                    f"(status {runs.status(flow_run)}); waiting: {waiting or 'none'}"
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
                    if not runs.is_conflict(e):
                        raise
                    raise UserError(f"call {tool_call_id!r} of run {run_id!r} is decided already") from None
                _, decisions = await runs.waiting(client, flow_run)  # the others may have been decided meanwhile
            decisions[index] = decision
            await _note_decision(client, flow_run, match[0], decision)
            if len(decisions) == len(calls):
                answer = {f"call_{i}": d.model_dump(mode="json") for i, d in decisions.items()}
                response = await client.resume_flow_run(flow_run.id, run_input=answer)
                if response.status == SetStateStatus.REJECT:
                    reason = getattr(response.details, "reason", "")
                    raise UserError(f"Prefect refused to resume run {run_id!r} with the decisions: {reason}")
        waits_ended(flow_run, match, "approved" if approved else "denied", note, agent_name=self.agent_name)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: the process executing it stops at its next step boundary (the run ends ``cancelled``); a
        run that nobody executes (started, waiting, crashed, orphaned) is cancelled at once."""
        async with self.client() as client:
            flow_run = await self.require(client, run_id)
            kind = runs.kind(flow_run)
            if kind in _FINAL_TYPES:
                return
            executing = kind in (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)
            if executing and not runs.orphaned(flow_run):
                if kind != StateType.CANCELLING:
                    await client.set_flow_run_state(flow_run.id, Cancelling(message=f"run {run_id!r} was cancelled"))
                return
            await end_cancelled(client, flow_run, agent_name=self.agent_name)

    async def prune(self, older_than: float) -> int:
        """Delete runs that finished more than ``older_than`` seconds ago: their flow runs (with their run inputs)
        and, in result storage that is a local directory, their records.

        Records in other storage (an object store block) are left to its own retention (a bucket lifecycle rule,
        say); until it removes them, a pruned run id started again replays them.
        """
        cutoff = time.time() - older_than
        count = 0
        async with self.client() as client:
            for flow_run in await runs.flow_runs(client, flow=self.flow, types=_FINAL_TYPES, limit=None):
                ended = runs.timestamp(flow_run.end_time)
                if ended is None or ended >= cutoff:
                    continue
                directories = runs.context_of(flow_run).get("storage") or []
                await client.delete_flow_run(flow_run.id)
                for directory in directories:
                    _delete_tree(Path(directory) / names.run_folder(str(flow_run.idempotency_key)))
                count += 1
        return count


async def _note_decision(client: Any, flow_run: Any, call: PendingDecision, decision: Decision) -> None:
    """Show the decision in the steps the suspended attempt saved: until an attempt reads it, the run's own
    account of its steps is that one (``runs show`` says who decided what, and a second decision is refused)."""
    saved = await runs.read_input(client, flow_run.id, names.STEPS_INPUT)
    for step in saved or []:
        if step.get("key") == call.key:
            step.update(status="done", finished_at=time.time(), result=decision.model_dump(mode="json"))
            await runs.write_input(client, flow_run.id, names.STEPS_INPUT, saved)
            return


def _delete_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


async def end_cancelled(client: Any, flow_run: Any, *, agent_name: str | None) -> None:
    """End a run that nobody executes as cancelled: its outcome first (read with the run), then its state."""
    error = RunCancelled(f"run {flow_run.idempotency_key!r} was cancelled")
    waits = await runs.pending(client, flow_run)
    await runs.write_input(
        client, flow_run.id, names.OUTCOME_INPUT, {"status": "cancelled", "error": error.to_record()}
    )
    await client.set_flow_run_state(flow_run.id, Cancelled(message=str(error)), force=True)
    name = agent_name or str(runs.context_of(flow_run).get("agent", "")) or None
    telemetry.run_ended(agent_name=name, engine=runs.ENGINE, status="cancelled")
    waits_ended(flow_run, waits, "cancelled", agent_name=agent_name)


def waits_ended(
    flow_run: Any,
    waits: list[PendingDecision],
    outcome: Literal["approved", "denied", "cancelled"],
    note: str | None = None,
    *,
    agent_name: str | None,
) -> None:
    """Report the end of waits for a decision: the process that records the decision reports it."""
    context = runs.context_of(flow_run)
    name = agent_name or str(context.get("agent", "")) or None
    for wait in waits:
        telemetry.approval_wait_ended(
            agent_name=name,
            run_id=wait.run_id,
            engine=runs.ENGINE,
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
