"""``LocalAdmin``: the run-admin port over a journal file — what the CLI and ``DurableAgent`` use to inspect,
decide, cancel and prune runs, with no agent needed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from .._exceptions import UserError
from .._ops import Decision
from ..durable.owner import is_dead_local_owner
from ..runs import FINAL_STATUSES, PendingDecision, RunInfo
from ._info import pending_decisions, run_info_from_row
from ._journal import Journal, RunRow, cancel_run, decide_step, dumps, now
from ._stuck import stuck_runs

__all__ = ["LocalAdmin", "parse_duration", "prune"]

ENGINE = "local"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"30d"``, ``"1w"`` (or a plain number of seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise UserError(f"cannot read {text!r} as a duration; write it like 90s, 10m, 2h, 30d or 1w")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def prune(journal: Journal, older_than: float, *, dry_run: bool = False) -> list[str]:
    """Delete finished runs (completed, failed, cancelled) that finished more than ``older_than`` seconds ago,
    with their steps. Runs in flight or waiting are never pruned. Returns the pruned run ids."""
    ids = journal.finished_before(now() - older_than)
    if ids and not dry_run:
        journal.delete_runs(ids)
    return ids


class LocalAdmin:
    """Runs of one journal file, for any agent."""

    engine = ENGINE

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __repr__(self) -> str:
        return f"LocalAdmin({str(self.journal.path)!r})"

    async def get_run(self, run_id: str) -> RunInfo | None:
        return self.get_run_now(run_id)

    def get_run_now(self, run_id: str) -> RunInfo | None:
        row = self.journal.get_run(run_id)
        return None if row is None else run_info_from_row(self.journal, row, with_steps=True)

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        rows = self.journal.list_runs(agent=agent, statuses=status, limit=limit)
        return [run_info_from_row(self.journal, r, with_steps=False) for r in rows]

    async def stuck(self, older_than: float) -> list[RunInfo]:
        return stuck_runs(self.journal, older_than)

    async def pending(self, run_id: str) -> list[PendingDecision]:
        return pending_decisions(self.journal, run_id)

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None:
        decide(self.journal, run_id, tool_call_id, approved=approved, note=note)

    async def cancel(self, run_id: str) -> None:
        request_cancel(self.journal, run_id)

    async def prune(self, older_than: float) -> int:
        return len(prune(self.journal, older_than))


def decide(journal: Journal, run_id: str, tool_call_id: str, *, approved: bool, note: str | None) -> None:
    row = journal.get_run(run_id)
    if row is None:
        raise UserError(f"no run {run_id!r} in {journal.path}")
    if row.status in FINAL_STATUSES:
        raise UserError(f"run {run_id!r} is {row.status}: there is nothing left to decide")
    pending = pending_decisions(journal, run_id)
    match = [p for p in pending if p.tool_call_id == tool_call_id]
    if not match:
        waiting = ", ".join(f"{p.tool_name} ({p.tool_call_id})" for p in pending) or "none"
        raise UserError(
            f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision (status {row.status}); "
            f"waiting: {waiting}"
        )
    decision = Decision(approved=approved, note=note)
    if not journal.write_counts(decide_step(run_id, match[0].key, decision.model_dump_json(), now()))[0]:
        raise UserError(f"call {tool_call_id!r} of run {run_id!r} was decided by someone else a moment ago")
    _waits_ended(row, match, "approved" if approved else "denied", note)


def request_cancel(journal: Journal, run_id: str) -> None:
    row = journal.get_run(run_id)
    if row is None:
        raise UserError(f"no run {run_id!r} in {journal.path}")
    if row.status in FINAL_STATUSES:
        return
    t = now()
    error = dumps({"type": "RunCancelled", "message": f"run {run_id!r} was cancelled"})
    waits = pending_decisions(journal, run_id) if row.status == "waiting" else []
    orphaned = row.status == "running" and (
        is_dead_local_owner(row.owner) or (row.lease_expires is not None and row.lease_expires < t)
    )
    counts = journal.write_counts(cancel_run(run_id, error, t, row, orphaned))
    if counts[0] or counts[1]:
        _waits_ended(row, waits, "cancelled")
        from ..observability._spans import run_ended

        run_ended(agent_name=row.agent, engine=ENGINE, status="cancelled")


def _waits_ended(
    row: RunRow,
    waits: list[PendingDecision],
    outcome: Literal["approved", "denied", "cancelled"],
    note: str | None = None,
) -> None:
    """Report the end of waits for a decision (the process that records the decision reports it)."""
    from ..observability._spans import approval_wait_ended

    for wait in waits:
        approval_wait_ended(
            agent_name=row.agent,
            run_id=row.run_id,
            engine=ENGINE,
            attempt=row.attempts,
            tool_name=wait.tool_name,
            tool_call_id=wait.tool_call_id,
            reason=wait.reason,
            outcome=outcome,
            started_at=wait.since,
            trace_context=row.trace_context,
            args=wait.args,
            note=note,
        )
