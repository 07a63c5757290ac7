"""Finding stuck runs in a journal: ``perdure runs list --stuck 10m``.

A run is stuck when it should be moving and is not:

* ``owner_gone``: it is ``running`` but its owner is a dead process on this machine, or its lease expired (the
  owner stopped renewing it). ``recover()`` or a worker resumes such runs.
* ``no_progress``: it is ``running`` or ``pending`` and nothing happened for the window: no step started or
  finished, the run row was not updated (accepted, claimed). A pending run nobody picks up (no worker running),
  or a tool call that hangs.

Runs waiting for a human decision are not stuck: they wait by design (``perdure runs list --status waiting``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..durable.owner import is_dead_local_owner
from ..runs import RunInfo
from ._info import run_info_from_row
from ._journal import Journal, now

__all__ = ["StuckRun", "find_stuck", "stuck_runs"]

StuckReason = Literal["owner_gone", "no_progress"]


@dataclass(frozen=True)
class StuckRun:
    """A stuck run, why it is stuck, and when it last made progress (epoch seconds)."""

    info: RunInfo
    reason: StuckReason
    last_progress: float


def find_stuck(
    journal: Journal, older_than_seconds: float, *, agent: str | None = None, at: float | None = None
) -> list[StuckRun]:
    """The stuck runs of ``journal`` (of one ``agent``, if given), longest without progress first."""
    t = now() if at is None else at
    stuck: list[StuckRun] = []
    for row, last_step in journal.runs_with_last_progress(agent):
        last_progress = max(row.created_at, row.updated_at, last_step or 0.0)
        reason: StuckReason | None = None
        if row.status == "running" and (
            is_dead_local_owner(row.owner) or (row.lease_expires is not None and row.lease_expires < t)
        ):
            reason = "owner_gone"
        elif t - last_progress >= older_than_seconds:
            reason = "no_progress"
        if reason is not None:
            stuck.append(StuckRun(run_info_from_row(journal, row, with_steps=False), reason, last_progress))
    stuck.sort(key=lambda s: s.last_progress)
    return stuck


def stuck_runs(journal: Journal, older_than_seconds: float, *, agent: str | None = None) -> list[RunInfo]:
    """Runs whose owner is gone, or that made no progress for ``older_than_seconds``; see ``find_stuck``."""
    return [s.info for s in find_stuck(journal, older_than_seconds, agent=agent)]
