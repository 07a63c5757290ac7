"""``stuck_runs``: runs whose owner is gone, or that made no progress for a while (``perdure runs list --stuck``)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from perdure import DurableAgent, RunWaiting
from perdure.local._journal import Journal
from perdure.local._stuck import find_stuck, stuck_runs

from ._agents import PROMPT, approval_agent, lookup_agent

DEAD_PID = 2**30  # above any pid_max: no such process


def _set(journal: Journal, run_id: str, **columns: object) -> None:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    journal.write([(f"UPDATE perdure_runs SET {assignments} WHERE run_id = ?", (*columns.values(), run_id))])


def _age_steps(journal: Journal, run_id: str, seconds: float) -> None:
    journal.write(
        [
            (
                "UPDATE perdure_steps SET started_at = started_at - ?, finished_at = finished_at - ? WHERE run_id = ?",
                (seconds, seconds, run_id),
            )
        ]
    )


@pytest.fixture
def runs(journal: str) -> Journal:
    """One journal holding a run of each kind; the ``running`` ones are made to look interrupted."""
    lookups = DurableAgent(lookup_agent(), journal=journal)
    refunds = DurableAgent(approval_agent(), journal=journal)
    lookups.run_sync(PROMPT, run_id="completed")
    with pytest.raises(RunWaiting):
        refunds.run_sync("refund", run_id="waiting")
    for run_id in ("dead-owner", "expired-lease", "live-but-idle", "live-and-busy"):
        lookups.run_sync(PROMPT, run_id=run_id)
    asyncio.run(lookups.start(PROMPT, run_id="pending-fresh"))
    asyncio.run(lookups.start(PROMPT, run_id="pending-old"))

    j = lookups._journal
    t = time.time()
    host = socket.gethostname()
    _set(j, "dead-owner", status="running", owner=f"{host}:{DEAD_PID}:1", lease_expires=t + 3600, finished_at=None)
    _set(j, "expired-lease", status="running", owner="elsewhere:1:1", lease_expires=t - 1, finished_at=None)
    _set(j, "live-but-idle", status="running", owner="elsewhere:1:1", lease_expires=t + 3600, updated_at=t - 3600)
    _set(j, "live-and-busy", status="running", owner="elsewhere:1:1", lease_expires=t + 3600, updated_at=t - 3600)
    _age_steps(j, "live-but-idle", 3600)
    _set(j, "pending-old", created_at=t - 3600, updated_at=t - 3600)
    for run_id in ("live-but-idle", "live-and-busy"):
        _set(j, run_id, created_at=t - 7200, finished_at=None)
    return j


def test_stuck_runs_are_those_whose_owner_is_gone_or_that_made_no_progress(runs: Journal) -> None:
    stuck = {s.info.run_id: s.reason for s in find_stuck(runs, 600)}
    assert stuck == {
        "dead-owner": "owner_gone",
        "expired-lease": "owner_gone",
        "live-but-idle": "no_progress",
        "pending-old": "no_progress",
    }
    assert sorted(i.run_id for i in stuck_runs(runs, 600)) == sorted(stuck)
    assert all(i.status in ("running", "pending") for i in stuck_runs(runs, 600))


def test_the_window_decides_what_no_progress_means(runs: Journal) -> None:
    owner_gone = {"dead-owner", "expired-lease"}
    assert {i.run_id for i in stuck_runs(runs, 24 * 3600)} == owner_gone
    everything_idle = {i.run_id for i in stuck_runs(runs, 0)}
    assert everything_idle == owner_gone | {"live-but-idle", "live-and-busy", "pending-old", "pending-fresh"}
    # Waiting for a human is not being stuck, however long it takes; finished runs are never stuck.
    assert not {"waiting", "completed"} & everything_idle


def test_longest_idle_first_and_by_agent(runs: Journal) -> None:
    found = find_stuck(runs, 600)
    assert [s.last_progress for s in found] == sorted(s.last_progress for s in found)
    assert find_stuck(runs, 600, agent="refunds") == []
    assert len(find_stuck(runs, 600, agent="lookup")) == 4


def test_a_recovered_run_is_no_longer_stuck(runs: Journal, journal: str) -> None:
    lookups = DurableAgent(lookup_agent(), journal=journal)
    asyncio.run(lookups.resume("dead-owner"))
    assert "dead-owner" not in {i.run_id for i in stuck_runs(runs, 600)}
