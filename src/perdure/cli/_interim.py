"""A stand-in ``RunAdmin`` for Prefect, used while ``perdure.prefect.admin(api_url)`` has not landed.

It wraps the code path the CLI used before it was rebuilt on the ``RunAdmin`` port, behind that port;
``_engines.py`` prefers ``perdure.prefect.admin`` when it exists, and this module goes away once it does. What the
stand-in cannot do raises a ``UserError`` that says so.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from .._exceptions import UserError
from ..runs import PendingDecision, RunInfo, StepInfo

__all__ = ["InterimPrefectAdmin"]


def _no_prune(engine: str) -> UserError:
    return UserError(
        f"perdure runs prune does not delete {engine} runs yet: {engine} keeps run history in its own store, "
        "with its own retention"
    )


class InterimPrefectAdmin:
    """PrefectAgent runs on a Prefect server, read through Prefect's API alone (get, list, stuck).

    Read-only: deciding on a call resumes the suspended flow run with every decision as its run input, and
    cancelling depends on whether a live process executes the run; that logic is the adapter's. Step descriptions
    and token counts live in the agent's result storage, which the CLI does not know: steps show keys and times.
    """

    engine = "prefect"

    def __init__(self, url: str) -> None:
        from ..prefect import _agent

        self.adapter: Any = _agent
        self.url = url

    async def _flow_runs(self, client: Any, *, run_id: str | None, states: list[Any] | None, limit: int) -> list[Any]:
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowRunFilter,
            FlowRunFilterIdempotencyKey,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.sorting import FlowRunSort

        from ..prefect import _names as names

        flow_runs: list[Any] = []
        while len(flow_runs) < limit:  # the API pages at 200
            page = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[names.TAG]),
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[run_id]) if run_id is not None else None,
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)) if states else None,
                ),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[names.DEPLOYMENT])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=min(200, limit - len(flow_runs)),
                offset=len(flow_runs),
            )
            flow_runs.extend(page)
            if len(page) < 200:
                break
        return [fr for fr in flow_runs if fr.idempotency_key]

    async def _input(self, client: Any, flow_run: Any, key: str) -> Any:
        from prefect.exceptions import ObjectNotFound

        try:
            return json.loads(await client.read_flow_run_input(flow_run.id, key=key))
        except ObjectNotFound:
            return None

    async def _pending(self, client: Any, flow_run: Any) -> list[PendingDecision]:
        from prefect.client.schemas.objects import StateType

        from ..prefect import _names as names

        state = flow_run.state
        if state is None or state.type != StateType.PAUSED or not state.state_details.pause_key:
            return []
        pause = state.state_details.pause_key
        calls = await self._input(client, flow_run, names.pending_input(pause)) or []
        decided: set[int] = set()
        if len(calls) > 1:
            prefix = names.decision_input(pause, 0)[:-1]
            items = await client.filter_flow_run_input(
                flow_run.id, key_prefix=prefix, limit=len(calls) + 1, exclude_keys=set()
            )
            decided = {int(item.key[len(prefix) :]) for item in items}
        run_id = str(flow_run.idempotency_key)
        return [
            PendingDecision(run_id, c["tool_call_id"], c["tool_name"], c["args"], c["reason"], c["key"], c["since"])
            for i, c in enumerate(calls)
            if i not in decided
        ]

    async def _steps(self, client: Any, flow_run: Any) -> list[StepInfo]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import TaskRunSort

        from .._ops import step_kind

        task_runs: list[Any] = []
        while True:
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
        stamp = self.adapter._timestamp
        return [
            StepInfo(
                key,
                step_kind(key),
                {StateType.COMPLETED: "done", StateType.RUNNING: "started"}.get(t.state_type, "failed"),
                max(1, t.flow_run_run_count),
                stamp(t.start_time) or stamp(t.expected_start_time) or 0.0,
                stamp(t.end_time),
                0,
                0,
                "",
            )
            for key, t in chosen.items()
        ]

    async def _info(self, client: Any, flow_run: Any, *, with_steps: bool) -> RunInfo:
        from ..prefect import _names as names
        from ..usage import Usage

        status = self.adapter._status(flow_run)
        outcome = (
            await self._input(client, flow_run, names.OUTCOME_INPUT)
            if status in ("completed", "failed", "cancelled")
            else None
        ) or {}
        context = (flow_run.context or {}).get("perdure", {})
        stamp = self.adapter._timestamp
        return RunInfo(
            run_id=str(flow_run.idempotency_key),
            agent=str(context.get("agent", "")),
            status=status,
            prompt=(flow_run.parameters or {}).get("prompt"),
            attempts=flow_run.run_count,
            created_at=stamp(flow_run.created) or 0.0,
            updated_at=max(stamp(flow_run.updated) or 0.0, stamp(getattr(flow_run.state, "timestamp", None)) or 0.0),
            finished_at=stamp(flow_run.end_time) if status in ("completed", "failed", "cancelled") else None,
            owner=self.adapter._owner(flow_run) if status == "running" else None,
            lease_expires=None,
            fingerprint=str(context.get("fingerprint", "")),
            usage=Usage(**outcome["usage"]) if outcome.get("usage") else Usage(),
            output=outcome.get("output"),
            error=outcome.get("error"),
            steps=await self._steps(client, flow_run) if with_steps else [],
            pending=await self._pending(client, flow_run),
            trace_context=context.get("trace_context"),
        )

    async def get_run(self, run_id: str) -> RunInfo | None:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            flow_runs = await self._flow_runs(client, run_id=run_id, states=None, limit=1)
            return await self._info(client, flow_runs[0], with_steps=True) if flow_runs else None

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        from prefect.client.orchestration import get_client

        states = [t for s in status for t in self.adapter._STATE_TYPES.get(s, [])] if status else None
        async with get_client() as client:
            flow_runs = await self._flow_runs(client, run_id=None, states=states, limit=limit or 10_000)
            infos = [await self._info(client, fr, with_steps=False) for fr in flow_runs]
        return [i for i in infos if (not status or i.status in status) and (agent is None or i.agent == agent)]

    async def stuck(self, older_than: float) -> list[RunInfo]:
        """Executing runs whose process is gone (on this machine), or with no step started or finished (and no
        state change) for ``older_than``; and scheduled runs nobody picked up for that long."""
        from prefect.client.orchestration import get_client

        cutoff = time.time() - older_than
        kinds = [*self.adapter._STATE_TYPES["running"], *self.adapter._STATE_TYPES["pending"]]
        out = []
        async with get_client() as client:
            for flow_run in await self._flow_runs(client, run_id=None, states=kinds, limit=10_000):
                info = await self._info(client, flow_run, with_steps=True)
                marks = [m for s in info.steps for m in (s.started_at, s.finished_at) if m is not None]
                last = max([*marks, info.updated_at])
                if self.adapter._orphaned(flow_run) or last < cutoff:
                    out.append(dataclasses.replace(info, updated_at=last))
        return out

    async def pending(self, run_id: str) -> list[PendingDecision]:
        info = await self.get_run(run_id)
        return [] if info is None else info.pending

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None:
        raise UserError(
            "perdure approve does not operate Prefect runs with this perdure (only list and show them): decide "
            "with PrefectAgent.approve(run_id, call_id) in your application, or in the suspended flow run's form "
            "in Prefect's UI"
        )

    async def cancel(self, run_id: str) -> None:
        raise UserError(
            "perdure runs cancel does not operate Prefect runs with this perdure (only list and show them): cancel "
            "with PrefectAgent.cancel(run_id) in your application, or in Prefect's UI"
        )

    async def prune(self, older_than: float) -> int:
        raise _no_prune("Prefect")
