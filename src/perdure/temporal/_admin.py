"""``TemporalAdmin``: the run-admin port over a Temporal namespace, by client calls alone (no agent, no worker).

What the server knows (status, memo, times, history) needs no worker; a run's steps come from its workflow's
``perdure.status`` query, which a worker of the agent answers (with none, ``get_run`` shows what the server alone
knows). Decisions are a workflow update that a worker applies. ``prune`` deletes closed workflows through the
server's DeleteWorkflowExecution (the namespace's retention deletes them anyway, later).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from .._exceptions import UserError
from .._ops import step_kind
from ..runs import PendingDecision, RunInfo, StepInfo
from ..usage import Usage
from ._names import (
    APPROVE_UPDATE,
    ENGINE,
    MEMO_AGENT,
    MEMO_FINGERPRINT,
    MEMO_PENDING,
    MEMO_PROMPT,
    STATUS_QUERY,
    WORKFLOW_PREFIX,
    workflow_name,
)
from ._wire import QUERY_DEADLINES, Approval, PendingRecord, StepRecord, query

__all__ = [
    "STATUS",
    "TemporalAdmin",
    "admin",
    "approve_run",
    "cancel_run",
    "describe_run",
    "list_run_infos",
    "prune_runs",
    "run_info",
    "stuck_run_infos",
]

STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}
_VISIBILITY_STATUS = {
    "pending": [],  # a started workflow is running: Temporal has no pending runs
    "running": ["Running"],
    "waiting": ["Running"],
    "completed": ["Completed"],
    "failed": ["Failed", "Terminated", "TimedOut"],
    "cancelled": ["Canceled"],
}

Connect = Callable[[], Awaitable[Client]]


def admin(
    address: str | Client,
    namespace: str = "default",
    *,
    query_deadlines: tuple[float, ...] = QUERY_DEADLINES,
    decide_timeout: float | None = None,
) -> TemporalAdmin:
    """The runs of every perdure agent on a Temporal namespace (``perdure.temporal.admin("localhost:7233")``).

    ``address``: the server's ``host:port`` (connected on first use), or a connected ``Client``.
    ``query_deadlines``: how long to wait for a worker to answer a run's status query (asked again with each
    deadline; then the server's own view). ``decide_timeout``: give up on a decision no worker applies.
    """
    return TemporalAdmin(address, namespace, query_deadlines=query_deadlines, decide_timeout=decide_timeout)


class TemporalAdmin:
    """Runs on a Temporal namespace, for any agent (``agent``: only the runs of that agent's built-in workflow)."""

    engine = ENGINE

    def __init__(
        self,
        client: str | Client | Connect,
        namespace: str = "default",
        *,
        agent: str | None = None,
        query_deadlines: tuple[float, ...] = QUERY_DEADLINES,
        decide_timeout: float | None = None,
    ) -> None:
        self._target = client
        self._client: Client | None = client if isinstance(client, Client) else None
        self.namespace = namespace
        self.agent = agent
        self.query_deadlines = query_deadlines
        self.decide_timeout = decide_timeout

    def __repr__(self) -> str:
        where = self._target if isinstance(self._target, str) else "client"
        return f"TemporalAdmin({where!r}, {self.namespace!r})"

    @property
    def _workflow_name(self) -> str | None:
        return None if self.agent is None else workflow_name(self.agent)

    async def client(self) -> Client:
        """The client: given, connected on first use (an address), or asked for each time (a callable)."""
        if self._client is not None:
            return self._client
        target = self._target
        if isinstance(target, str):
            try:
                self._client = await Client.connect(target, namespace=self.namespace)
            except Exception as e:
                raise UserError(f"cannot reach Temporal at {target}: {e}") from e
            return self._client
        assert callable(target)
        return await target()

    # --- the RunAdmin port ------------------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, workflow_id: str | None = None) -> RunInfo | None:
        """``workflow_id``: the workflow of a run inside your own workflow whose id is not the run id."""
        try:
            return await run_info(
                await self.client(),
                run_id,
                workflow_id=workflow_id,
                workflow_name=self._workflow_name,
                deadlines=self.query_deadlines,
            )
        except _NoRun:
            return None

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        name = workflow_name(agent) if agent is not None else self._workflow_name
        return await list_run_infos(await self.client(), status=status, limit=limit, workflow_name=name)

    async def stuck(self, older_than: float) -> list[RunInfo]:
        return await stuck_run_infos(await self.client(), older_than, workflow_name=self._workflow_name)

    async def pending(self, run_id: str, *, workflow_id: str | None = None) -> list[PendingDecision]:
        info = await self.get_run(run_id, workflow_id=workflow_id)
        if info is None:
            raise UserError(f"no run {run_id!r} on this Temporal namespace")
        return info.pending

    async def decide(
        self,
        run_id: str,
        tool_call_id: str,
        *,
        approved: bool,
        note: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        await approve_run(
            await self.client(),
            run_id,
            tool_call_id,
            approved=approved,
            note=note,
            workflow_id=workflow_id,
            workflow_name=self._workflow_name,
            timeout=self.decide_timeout,
        )

    async def cancel(self, run_id: str) -> None:
        await cancel_run(await self.client(), run_id, workflow_name=self._workflow_name)

    async def prune(self, older_than: float) -> int:
        return await prune_runs(await self.client(), older_than, workflow_name=self._workflow_name)


# --- by client calls alone -------------------------------------------------------------------------------------


class _NoRun(UserError):
    """No workflow with this id."""


async def describe_run(client: Client, run_id: str, workflow_name: str | None, *, any_type: bool = False) -> Any:
    """The run's workflow; ``workflow_name``: it must be of that type (None: any perdure agent's; ``any_type``:
    any workflow at all, e.g. the user's own workflow a run executes in)."""
    try:
        desc = await client.get_workflow_handle(run_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise _NoRun(f"no run {run_id!r} on this Temporal namespace") from None
        raise
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
    """A decision by client calls alone: the ``perdure.approve`` update (a worker applies it).

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
            desc = await describe_run(client, workflow_id or run_id, workflow_name, any_type=workflow_id is not None)
            status = STATUS.get(desc.status, "finished")
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
    """Cancel a run's workflow (a no-op once it ended)."""
    desc = await describe_run(client, run_id, workflow_name)
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
    """A run by client calls alone: the ``perdure.status`` query (answered by a worker of the agent), or what the
    server alone knows (status, memo, times) when no worker answers within ``deadlines``."""
    desc = await describe_run(client, workflow_id or run_id, workflow_name, any_type=workflow_id is not None)
    handle = client.get_workflow_handle(workflow_id or run_id)
    memo = await desc.memo()
    agent = str(memo.get(MEMO_AGENT) or str(desc.workflow_type)[len(WORKFLOW_PREFIX) :])
    try:
        data: dict[str, Any] | None = await query(
            handle, STATUS_QUERY, {"run_id": run_id}, deadlines or QUERY_DEADLINES
        )
    except Exception:
        data = None  # no worker answered: what the server alone knows
    status = STATUS.get(desc.status, "running")
    if data is None:
        return _server_view(run_id, desc, memo)
    if not (status in ("failed", "cancelled") and data["status"] in ("running", "waiting")):
        status = data["status"]  # the workflow may also have been terminated, or timed out
    steps = [StepRecord.model_validate(s) for s in data["steps"]]
    error = data.get("error")
    if status == "cancelled":
        error = {"type": "RunCancelled", "message": f"run {run_id!r} was cancelled"}
    elif status == "failed" and error is None:
        error = {"type": "AgentRunError", "message": f"run {run_id!r} ended {desc.status.name.lower()}"}
    times = [s.finished_at or s.started_at for s in steps]
    usage = {k: v for k, v in (data.get("usage") or {}).items() if k in Usage.__dataclass_fields__}
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
        usage=Usage(**usage),
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


def _type_query(workflow_name: str | None) -> str:
    if workflow_name is not None:
        return f"WorkflowType = '{_quoted(workflow_name)}'"
    return f"WorkflowType STARTS_WITH '{WORKFLOW_PREFIX}'"


async def list_run_infos(
    client: Client,
    *,
    status: str | Sequence[str] | None = None,
    limit: int | None = 100,
    workflow_name: str | None = None,
) -> list[RunInfo]:
    """Runs from Temporal's visibility store: the runs of the agent whose workflow type is ``workflow_name``, or
    of every perdure agent (None), newest first."""
    wanted = [status] if isinstance(status, str) else list(status or [])
    unknown = [s for s in wanted if s not in _VISIBILITY_STATUS]
    if unknown:
        raise UserError(f"unknown run status {unknown[0]!r}; one of {', '.join(_VISIBILITY_STATUS)}")
    names = sorted({n for s in wanted for n in _VISIBILITY_STATUS[s]})
    if wanted and not names:
        return []  # only pending runs asked for: there are none
    query = _type_query(workflow_name)
    if names:
        query += " AND ExecutionStatus IN (" + ", ".join(f"'{n}'" for n in names) + ")"
    out: list[RunInfo] = []
    page = min(max(limit or 1000, 1), 1000)
    async for wf in client.list_workflows(query, page_size=page):
        info = _server_view(wf.id, wf, await wf.memo())
        if wanted and info.status not in wanted:
            continue
        out.append(info)
        if limit is not None and len(out) >= limit:
            break
    return out


def _server_view(run_id: str, wf: Any, memo: dict[str, Any]) -> RunInfo:
    """A run as the server alone knows it (a workflow's description or listing, and its memo): no steps."""
    pending = [PendingRecord.model_validate(p) for p in memo.get(MEMO_PENDING) or []]
    status = STATUS.get(wf.status, "running") if wf.status is not None else "running"
    if status == "running" and pending:
        status = "waiting"
    return RunInfo(
        run_id=run_id,
        agent=str(memo.get(MEMO_AGENT) or str(wf.workflow_type)[len(WORKFLOW_PREFIX) :]),
        status=status,
        prompt=memo.get(MEMO_PROMPT),
        attempts=1,
        created_at=wf.start_time.timestamp(),
        updated_at=(wf.close_time or wf.start_time).timestamp(),
        finished_at=wf.close_time.timestamp() if wf.close_time else None,
        owner=None,
        lease_expires=None,
        fingerprint=memo.get(MEMO_FINGERPRINT, ""),
        usage=Usage(),
        pending=[_pending(p) for p in pending if p.run_id == run_id],
    )


async def stuck_run_infos(client: Client, seconds: float, *, workflow_name: str | None = None) -> list[RunInfo]:
    """Runs that should move and do not: running, not waiting for a human, and no event in their workflow's
    history for ``seconds`` (no step scheduled or finished, no workflow task: e.g. no worker polls their task
    queue, or their tool hangs). ``updated_at`` is that last event's time. Temporal re-runs the steps of dead
    workers by itself: a run is stuck only when that does not happen either."""
    from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest

    cutoff = time.time() - seconds
    out: list[RunInfo] = []
    for info in await list_run_infos(client, status="running", limit=None, workflow_name=workflow_name):
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


async def prune_runs(client: Client, seconds: float, *, workflow_name: str | None = None) -> int:
    """Delete the closed workflows of perdure runs that closed more than ``seconds`` ago (with their history);
    how many deletions were requested. Running and waiting runs are never pruned. The server deletes at its own
    pace (the dev server takes about a minute): until then a run is still listed, and pruned again."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest

    cutoff = datetime.fromtimestamp(time.time() - seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    query = f"{_type_query(workflow_name)} AND ExecutionStatus != 'Running' AND CloseTime < '{cutoff}'"
    executions = [(wf.id, wf.run_id) async for wf in client.list_workflows(query)]
    deleted = 0
    for workflow_id, run_id in executions:
        try:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                )
            )
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:  # deleted meanwhile
                raise
            continue
        deleted += 1
    return deleted


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _pending(p: PendingRecord) -> PendingDecision:
    return PendingDecision(p.run_id, p.tool_call_id, p.tool_name, p.args, p.reason, p.key, p.since)
