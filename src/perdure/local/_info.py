"""Run records from journal rows: what ``get_run``, ``list_runs``, the stuck finder and the CLI show."""

from __future__ import annotations

import json

from .._ops import step_kind
from ..runs import FINAL_STATUSES, PendingDecision, RunInfo, StepInfo
from ..usage import Usage
from ._journal import Journal, RunRow, StepRow

__all__ = ["pending_decisions", "run_info_from_row"]


def _pending(run_id: str, steps: list[StepRow]) -> list[PendingDecision]:
    return [
        PendingDecision(run_id, p["tool_call_id"], p["tool_name"], p["args"], p["reason"], s.key, s.started_at)
        for s in steps
        if s.status == "waiting" and s.payload
        for p in [json.loads(s.payload)]
    ]


def pending_decisions(journal: Journal, run_id: str) -> list[PendingDecision]:
    return _pending(run_id, journal.steps(run_id))


def run_info_from_row(journal: Journal, row: RunRow, *, with_steps: bool) -> RunInfo:
    steps = journal.steps(row.run_id) if with_steps else []
    if row.usage:
        usage = Usage(**json.loads(row.usage))
    elif with_steps:
        usage = Usage(
            requests=sum(1 for s in steps if s.kind == "model"),
            input_tokens=sum(s.input_tokens for s in steps),
            output_tokens=sum(s.output_tokens for s in steps),
            tool_calls=sum(1 for s in steps if s.kind == "tool"),
        )
    else:
        usage = Usage()
    if row.status in FINAL_STATUSES:
        pending = []  # a finished (or cancelled) run waits for nobody
    elif with_steps:
        pending = _pending(row.run_id, steps)
    elif row.status == "waiting":
        pending = pending_decisions(journal, row.run_id)  # a listing shows what a waiting run waits for
    else:
        pending = []
    return RunInfo(
        run_id=row.run_id,
        agent=row.agent,
        status=row.status,
        prompt=json.loads(row.input).get("prompt"),
        attempts=row.attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        owner=row.owner,
        lease_expires=row.lease_expires,
        fingerprint=row.fingerprint,
        usage=usage,
        output=json.loads(row.output) if row.output else None,
        error=json.loads(row.error) if row.error else None,
        steps=[
            StepInfo(
                s.key,
                step_kind(s.key),
                _status(s),
                s.attempt,
                s.started_at,
                s.finished_at,
                s.input_tokens,
                s.output_tokens,
                s.describe,
                json.loads(s.result) if s.result else None,
            )
            for s in steps
        ],
        pending=pending,
        trace_context=json.loads(row.trace_context) if row.trace_context else None,
        cancel_requested=bool(row.cancel_requested),
    )


def _status(step: StepRow) -> str:
    """``failed`` for a failed model request and for a tool call that raised (recorded as an error outcome)."""
    if step.status == "done" and step.kind == "tool" and step.result and '"kind":"error"' in step.result:
        return "failed"
    return step.status
