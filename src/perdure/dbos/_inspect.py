"""A run as DBOS knows it, in perdure's shapes: ``RunInfo`` from a workflow status, its steps and its status event.

Shared by ``DBOSAgent.get_run``/``list_runs`` (through the launched ``DBOS``) and by the CLI's functions
(through a ``DBOSClient``, from a process that registered no agent).
"""

from __future__ import annotations

import json
from typing import Any

from .._ops import step_kind
from ..runs import PendingDecision, RunInfo, StepInfo
from ..usage import Usage
from ._codec import error_record
from ._names import DESCRIBE, ERROR, RECV_STEP, RESULT, STARTED_SUFFIX, agent_of

__all__ = ["ACTIVE", "build_run_info", "pending_of", "run_status"]

# The DBOS statuses of a run that is not finished. A waiting run is PENDING, or ENQUEUED for a moment while DBOS
# recovers it after a restart: its status event tells it waits in both.
ACTIVE = ("PENDING", "ENQUEUED", "DELAYED")

# DBOS workflow status -> perdure run status (an active one may be "waiting": see run_status).
_STATUSES = {
    "ENQUEUED": "pending",
    "DELAYED": "pending",
    "SUCCESS": "completed",
    "ERROR": "failed",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "failed",
    "CANCELLED": "cancelled",
}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _seconds(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000.0


def pending_of(event: Any) -> list[dict[str, Any]]:
    """The calls waiting for a decision, from the run's status event (None if it never waited)."""
    if isinstance(event, dict) and event.get("status") == "waiting":
        return [dict(p) for p in event.get("pending") or []]
    return []


def run_status(dbos_status: str, event: Any) -> str:
    if dbos_status in ACTIVE and pending_of(event):
        return "waiting"
    if dbos_status == "PENDING":
        return "running"
    return _STATUSES.get(dbos_status, dbos_status.lower())


def _run_input(status: Any) -> dict[str, Any]:
    inputs = _get(status, "input")
    args = _get(inputs, "args") if inputs is not None else None
    if args and isinstance(args[0], dict):
        return args[0]
    return {}


def _step_infos(steps: list[Any], pending_keys: set[str]) -> tuple[list[StepInfo], Usage]:
    usage = Usage()
    infos: list[StepInfo] = []
    recorded = {_get(s, "function_name") for s in steps}
    decided = [s for s in steps if _get(s, "function_name") == RECV_STEP and _get(s, "output") is not None]
    waits = 0
    for s in steps:
        name = str(_get(s, "function_name") or "")
        if not name.startswith("turn/"):
            continue  # DBOS's own steps (events, messages, sleeps) and a user's steps
        output = _get(s, "output")
        started, finished = _seconds(_get(s, "started_at_epoch_ms")), _seconds(_get(s, "completed_at_epoch_ms"))
        describe = str(output.get(DESCRIBE, "")) if isinstance(output, dict) else ""
        failed = _get(s, "error") is not None or (isinstance(output, dict) and ERROR in output)
        status = "failed" if failed else "done"
        key = name
        in_tokens = out_tokens = 0
        if name.endswith(STARTED_SUFFIX):
            key = name[: -len(STARTED_SUFFIX)]
            if key in recorded:
                continue  # the call finished: its own step says so
            status, finished = "started", None
        kind = step_kind(key)
        if kind == "model" and isinstance(output, dict) and isinstance(output.get(RESULT), str):
            tokens = json.loads(output[RESULT]).get("usage") or {}
            in_tokens, out_tokens = int(tokens.get("input_tokens", 0)), int(tokens.get("output_tokens", 0))
            usage.requests += 1
            usage.input_tokens += in_tokens
            usage.output_tokens += out_tokens
        elif kind == "tool" and status != "started":
            usage.tool_calls += 1
        elif kind in ("approval", "unknown"):
            # Decisions arrive in the order the waits were recorded: the n-th wait took the n-th message.
            if key in pending_keys:
                status, finished = "waiting", None
            else:
                finished = _seconds(_get(decided[waits], "completed_at_epoch_ms")) if waits < len(decided) else None
            waits += 1
        infos.append(StepInfo(key, kind, status, 0, started or 0.0, finished, in_tokens, out_tokens, describe))
    return infos, usage


def build_run_info(status: Any, steps: list[Any] | None, event: Any) -> RunInfo:
    """A ``RunInfo`` from a DBOS ``WorkflowStatus``, its steps (None: not loaded) and its status event."""
    run_id = str(_get(status, "workflow_id"))
    dbos_status = str(_get(status, "status"))
    state = run_status(dbos_status, event)
    data = _run_input(status)
    pending = pending_of(event) if state == "waiting" else []
    step_infos, usage = _step_infos(steps or [], {p.get("key", "") for p in pending})
    output: Any = None
    result = _get(status, "output")
    if state == "completed" and isinstance(result, dict):
        output = result.get("output")
        usage = Usage(**result.get("usage", {}))
    error: dict[str, Any] | None = None
    if state == "failed":
        error = error_record(_get(status, "error")) or {"type": "AgentRunError", "message": dbos_status}
    elif state == "cancelled":
        error = {"type": "RunCancelled", "message": f"run {run_id!r} was cancelled"}
    created = _seconds(_get(status, "created_at")) or 0.0
    return RunInfo(
        run_id=run_id,
        agent=agent_of(str(_get(status, "name") or "")) or str(_get(status, "name") or ""),
        status=state,
        prompt=data.get("prompt"),
        attempts=int(_get(status, "recovery_attempts") or 0),
        created_at=created,
        updated_at=_seconds(_get(status, "updated_at")) or created,
        finished_at=_seconds(_get(status, "completed_at")),
        owner=_get(status, "executor_id"),
        lease_expires=None,
        fingerprint=str(data.get("fingerprint") or ""),
        usage=usage,
        output=output,
        error=error,
        steps=step_infos,
        pending=[
            PendingDecision(
                run_id,
                str(p.get("tool_call_id")),
                str(p.get("tool_name")),
                dict(p.get("args") or {}),
                str(p.get("reason")),
                str(p.get("key")),
                float(p.get("since") or 0.0),
            )
            for p in pending
        ],
        trace_context=None,
        cancel_requested=dbos_status == "CANCELLED",
    )
