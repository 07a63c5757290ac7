"""Runs as Prefect knows them, read and written through its API alone (no agent): states, owners, claims, run inputs.

Shared by the caller's side (``_backend``), the steps' side (``_store``) and the admin (``_admin``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import AsyncClientContext
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from .._ops import Decision
from ..durable.owner import is_dead_local_owner, this_owner
from ..runs import PendingDecision
from . import _names as names

__all__ = [
    "ENGINE",
    "EXECUTING",
    "STATE_TYPES",
    "attempts",
    "claim",
    "client",
    "context_of",
    "find",
    "flow_runs",
    "is_conflict",
    "kind",
    "orphaned",
    "owner",
    "pending",
    "read_input",
    "status",
    "timestamp",
    "waiting",
    "write_input",
]

ENGINE = "prefect"

EXECUTING: dict[UUID, Any] = {}
"""Flow runs executing in this process (by Prefect flow run id): never two executions of one run at once."""

# Prefect state type -> perdure run status (CANCELLING and orphaned runs are refined in ``status``).
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
STATE_TYPES = {s: [t for t, v in _STATUS.items() if v == s] for s in set(_STATUS.values())}
"""perdure run status -> the Prefect state types it may be (listing filters)."""
STATE_TYPES["cancelled"].append(StateType.CANCELLING)  # a cancelling run whose process died


@asynccontextmanager
async def client() -> AsyncIterator[Any]:
    """The Prefect client of this task, shared with everything Prefect does inside it (the flow engine too)."""
    async with AsyncClientContext.get_or_create() as context:
        yield context.client


def kind(flow_run: Any) -> StateType:
    return flow_run.state.type if flow_run.state is not None else StateType.SCHEDULED


def owner(flow_run: Any) -> str | None:
    """The process executing the run (``host:pid:start-time``): its claim's, then the one it recorded."""
    state = flow_run.state
    if state is not None and state.type == StateType.PENDING:
        message = state.message or ""
        return message[len(names.CLAIMED_BY) :] if message.startswith(names.CLAIMED_BY) else None
    found: str | None = flow_run.infrastructure_pid
    return found


def orphaned(flow_run: Any) -> bool:
    """True if the run's state says it executes, but the process executing it is gone."""
    if flow_run.id in EXECUTING:
        return False
    return _gone(flow_run, owner(flow_run))  # no owner: not executed by perdure (or not yet), left alone


def status(flow_run: Any) -> str:
    state = flow_run.state
    if state is None:
        return "pending"
    if state.type == StateType.CANCELLING and orphaned(flow_run):
        return "cancelled"
    return _STATUS.get(state.type, "running")


def timestamp(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def is_conflict(error: PrefectHTTPStatusError) -> bool:
    return getattr(error.response, "status_code", None) == 409


# --- finding runs -----------------------------------------------------------------------------------------------


async def flow_runs(
    client: Any,
    *,
    flow: str | None = None,
    run_id: str | None = None,
    types: list[StateType] | None = None,
    limit: int | None = 100,
) -> list[Any]:
    """perdure's flow runs (of the flow ``flow``, or of every agent), newest first."""
    found: list[Any] = []
    while limit is None or len(found) < limit:  # the API pages at 200
        size = 200 if limit is None else min(200, limit - len(found))
        page = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])) if flow is not None else None,
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[names.TAG]),
                idempotency_key=FlowRunFilterIdempotencyKey(any_=[run_id]) if run_id is not None else None,
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)) if types else None,
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[names.DEPLOYMENT])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=size,
            offset=len(found),
        )
        found.extend(page)
        if len(page) < size:
            break
    return [fr for fr in found if fr.idempotency_key]


async def find(client: Any, run_id: str, flow: str | None) -> Any | None:
    """The flow run of ``run_id`` (of the agent ``flow``, or the newest of any agent)."""
    found = await flow_runs(client, flow=flow, run_id=run_id, limit=1)
    return found[0] if found else None


# --- run inputs --------------------------------------------------------------------------------------------------


async def read_input(client: Any, flow_run_id: UUID, key: str) -> Any | None:
    try:
        return json.loads(await client.read_flow_run_input(flow_run_id, key=key))
    except ObjectNotFound:
        return None
    except PrefectHTTPStatusError as e:
        if getattr(e.response, "status_code", None) == 404:
            return None
        raise


async def write_input(client: Any, flow_run_id: UUID, key: str, value: Any) -> None:
    """Write (or replace) a run input: Prefect has no update, so an existing one is deleted and created again."""
    text = json.dumps(value)
    try:
        await client.create_flow_run_input(flow_run_id, key=key, value=text)
    except PrefectHTTPStatusError as e:
        if not is_conflict(e):
            raise
        await client.delete_flow_run_input(flow_run_id, key=key)
        await client.create_flow_run_input(flow_run_id, key=key, value=text)


async def claim(client: Any, flow_run: Any, who: str) -> bool:
    """Create the claim of the run out of its current state; False if another live process claimed it first."""
    state_id = flow_run.state.id if flow_run.state is not None else flow_run.id
    value = json.dumps({"owner": who, "at": time.time()})
    for retry in range(100):
        key = names.claim_input(state_id, retry)
        try:
            await client.create_flow_run_input(flow_run.id, key=key, value=value)
        except PrefectHTTPStatusError as e:
            if not is_conflict(e):
                raise
            earlier = await read_input(client, flow_run.id, key)
            if not _gone(flow_run, (earlier or {}).get("owner")):
                return False
            continue  # claimed by a process that died before it moved the run on: claim it again
        return True
    return False


def _gone(flow_run: Any, who: str | None) -> bool:
    """True if ``who`` (a claimant of this run) is a process that no longer executes it."""
    if who is None:
        return False
    return (who == this_owner() and flow_run.id not in EXECUTING) or is_dead_local_owner(who)


async def attempts(client: Any, flow_run: Any) -> int:
    """How many executions the run had, this one included: each began with a perdure claim."""
    states = await client.read_flow_run_states(flow_run.id)
    claims = [s for s in states if s.type == StateType.PENDING and (s.message or "").startswith(names.CLAIMED_BY)]
    return max(1, len(claims))


def context_of(flow_run: Any) -> Mapping[str, Any]:
    found: Mapping[str, Any] = (flow_run.context or {}).get(names.CONTEXT, {})
    return found


# --- decisions -------------------------------------------------------------------------------------------------


async def waiting(client: Any, flow_run: Any) -> tuple[list[PendingDecision], dict[int, Decision]]:
    """The calls the run's suspension waits for (in the order of its run input), and those decided so far."""
    state = flow_run.state
    if state is None or state.type != StateType.PAUSED or not state.state_details.pause_key:
        return [], {}
    pause = state.state_details.pause_key
    value = await read_input(client, flow_run.id, names.pending_input(pause))
    if value is None:
        return [], {}  # paused by someone else (Prefect's UI): nothing of perdure's waits
    run_id = str(flow_run.idempotency_key)
    calls = [
        PendingDecision(run_id, c["tool_call_id"], c["tool_name"], c["args"], c["reason"], c["key"], c["since"])
        for c in value
    ]
    decided: dict[int, Decision] = {}
    if len(calls) > 1:  # one call's decision waits, as a run input of its own, for the others
        prefix = names.decision_input(pause, 0)[:-1]
        for item in await client.filter_flow_run_input(
            flow_run.id, key_prefix=prefix, limit=len(calls) + 1, exclude_keys=set()
        ):
            decided[int(item.key[len(prefix) :])] = Decision.model_validate_json(item.value)
    return calls, decided


async def pending(client: Any, flow_run: Any) -> list[PendingDecision]:
    calls, decided = await waiting(client, flow_run)
    return [c for i, c in enumerate(calls) if i not in decided]
