"""Runs across real processes: acceptance is durable, orphans are recovered, a live owner is never doubled, a
SIGKILLed owner is detected at once, many processes share one journal. Crashes are real SIGKILLs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from perdure import DurableAgent, RunInProgress, RunWaiting
from perdure.testing.conformance import Harness

from .agents import build, prompt
from .conftest import make_harness, model_calls, tool_calls


def runs_table(journal: str) -> dict[str, tuple[str, int, float]]:
    """run id -> (status, attempts, updated_at)."""
    conn = sqlite3.connect(journal)
    rows = conn.execute("SELECT run_id, status, attempts, updated_at FROM perdure_runs").fetchall()
    conn.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def step_keys(journal: str, run_id: str) -> list[str]:
    conn = sqlite3.connect(journal)
    rows = conn.execute("SELECT key FROM perdure_steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    conn.close()
    return [r[0] for r in rows]


def wait_for(paths: list[Path], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"not reached: {[p.name for p in paths if not p.exists()]}"
        time.sleep(0.01)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# --- accepted = durable ----------------------------------------------------------------------------------------


def test_a_started_run_survives_its_process_and_a_new_process_recovers_it(
    harness: Harness, journal: str, effects_log: Path
) -> None:
    started = harness.crash_after_result("start", scenario="quick", run_id="s1")  # SIGKILLed right after start()
    assert started["status"] == "pending"
    assert tool_calls(effects_log) == []  # nothing executed at acceptance

    out = harness.call("recover", scenario="quick")
    assert out["recovered"] == ["s1"]
    assert out["runs"]["s1"]["status"] == "completed"
    assert out["runs"]["s1"]["output"] == "stamped: stamp 7 for s1"
    assert len(tool_calls(effects_log, "s1")) == 1
    assert len(model_calls(effects_log, "s1")) == 2


def test_a_run_killed_before_its_first_step_is_finished_by_resume(harness: Harness, journal: str) -> None:
    harness.crash("run", "before_model:1", run_id="b1", scenario="workflow")
    status, attempts, _ = runs_table(journal)["b1"]
    assert (status, attempts) == ("running", 1)  # the run was committed before its first step
    assert step_keys(journal, "b1") == []

    out = harness.call("resume", scenario="workflow", run_id="b1")
    assert out["status"] == "completed", out
    assert out["output"] == "booked: charge_card=charged 4200; send_receipt=receipt for 4200"
    assert [e["key"] for e in harness.model_effects("b1")] == ["turn/1/model", "turn/2/model", "turn/3/model"]
    assert len(harness.tool_effects("b1")) == 2


# --- recovery -----------------------------------------------------------------------------------------------


def test_recover_resumes_every_run_orphaned_by_a_killed_process(
    harness: Harness, journal: str, tmp_path: Path, effects_log: Path
) -> None:
    # A finished run of the same agent, which recover() must leave alone.
    (tmp_path / "release-f1").write_text("1")
    durable = DurableAgent(build("slow"), journal=journal)
    durable.run_sync(prompt("slow", "f1"), run_id="f1")
    finished_before = runs_table(journal)["f1"]

    ids = ["o1", "o2", "o3"]
    holder = harness.spawn("run_many", scenario="slow", run_ids=ids)
    wait_for([tmp_path / f"holding-{r}" for r in ids])
    kill(holder)
    assert {r: runs_table(journal)[r][0] for r in ids} == dict.fromkeys(ids, "running")

    for r in ids:
        (tmp_path / f"release-{r}").write_text("1")
    out = harness.call("recover", scenario="slow")
    assert sorted(out["recovered"]) == ids
    for r in ids:
        assert out["runs"][r]["status"] == "completed", out["runs"][r]
        assert out["runs"][r]["output"] == "released: hold=held"
        assert out["runs"][r]["attempts"] == 2
        assert len(tool_calls(effects_log, r, "hold")) == 2  # interrupted mid-call: at-least-once
    assert runs_table(journal)["f1"] == finished_before
    assert len(tool_calls(effects_log, "f1")) == 1


def test_a_run_owned_by_a_live_process_is_never_executed_twice(
    tmp_path: Path, journal: str, effects_log: Path, harness: Harness
) -> None:
    # A lease of an hour: when the owner dies, only detecting the dead process can free the run at once.
    owner = make_harness(tmp_path, journal, lease_seconds=3600).spawn("run", scenario="slow", run_id="live")
    wait_for([tmp_path / "holding-live"])
    durable = DurableAgent(build("slow"), journal=journal, lease_seconds=3600)
    before = durable.get_run_sync("live")
    assert before.status == "running"
    assert before.lease_expires is not None and before.lease_expires > time.time() + 3000

    with pytest.raises(RunInProgress, match="'live' is being executed by"):
        durable.resume_sync("live")
    with pytest.raises(RunInProgress):
        durable.run_sync(prompt("slow", "live"), run_id="live")
    assert durable.recover_sync() == []
    after = durable.get_run_sync("live")
    assert (after.status, after.owner, after.attempts) == ("running", before.owner, 1)
    assert len(tool_calls(effects_log, "live")) == 1

    kill(owner)
    (tmp_path / "release-live").write_text("1")
    t0 = time.monotonic()
    result = durable.resume_sync("live")
    assert result.output == "released: hold=held"
    assert time.monotonic() - t0 < 10  # not an hour
    info = durable.get_run_sync("live")
    assert (info.status, info.attempts) == ("completed", 2)


# --- at-most-once waits for a human -------------------------------------------------------------------------


def test_an_at_most_once_call_cut_by_a_crash_waits_for_a_human(
    harness: Harness, journal: str, tmp_path: Path, effects_log: Path
) -> None:
    ids = ["u-yes", "u-no"]
    child = harness.spawn("run_many", {"PERDURE_CRASH_AT": "tool:transfer"}, scenario="unknown_wait", run_ids=ids)
    wait_for([tmp_path / f"crashed-{r}-tool_transfer" for r in ids])
    kill(child)

    durable = DurableAgent(build("unknown_wait"), journal=journal)
    for r in ids:
        with pytest.raises(RunWaiting) as waiting:
            durable.resume_sync(r)
        assert [(p["tool_call_id"], p["reason"], p["key"]) for p in waiting.value.pending] == [
            ("t1", "unknown_outcome", "turn/1/unknown/t1")
        ]
        info = durable.get_run_sync(r)
        assert info.status == "waiting"
        assert [(p.tool_name, p.args) for p in info.pending] == [("transfer", {"amount": 999})]

    durable.approve_sync("u-yes", "t1", approved=True)
    durable.approve_sync("u-no", "t1", approved=False, note="the bank has no record of it")
    assert durable.resume_sync("u-yes").output == "transfer: A human confirmed that this call did happen."
    assert durable.resume_sync("u-no").output == (
        "transfer: A human confirmed that this call did NOT happen. Note: the bank has no record of it"
    )
    for r in ids:
        assert len(tool_calls(effects_log, r, "transfer")) == 1  # never run again


# --- many processes, one journal ---------------------------------------------------------------------------


def test_many_processes_share_one_journal(harness: Harness, journal: str, effects_log: Path) -> None:
    batches = [[f"p{p}-r{i}" for i in range(10)] for p in range(4)]
    children = [harness.spawn("run_many", scenario="quick", run_ids=ids) for ids in batches]
    outcomes = [harness.finish(c, "run_many") for c in children]
    for ids, out in zip(batches, outcomes, strict=True):
        for r in ids:
            assert out[r]["status"] == "completed", out[r]
            assert out[r]["output"] == f"stamped: stamp 7 for {r}"
    every = [r for ids in batches for r in ids]
    assert runs_table(journal).keys() == set(every)
    assert {v[0] for v in runs_table(journal).values()} == {"completed"}
    for r in every:
        assert step_keys(journal, r) == ["turn/1/model", "turn/1/tool/s1", "turn/2/model"]
        assert len(tool_calls(effects_log, r)) == 1
        assert len(model_calls(effects_log, r)) == 2


def test_a_live_owner_keeps_renewing_its_lease(tmp_path: Path, journal: str, harness: Harness) -> None:
    owner = make_harness(tmp_path, journal, lease_seconds=1.5).spawn("run", scenario="slow", run_id="beat")
    wait_for([tmp_path / "holding-beat"])
    durable = DurableAgent(build("slow"), journal=journal)
    first = durable.get_run_sync("beat").lease_expires
    time.sleep(2.0)  # longer than the lease: only the heartbeat keeps the run owned
    later = durable.get_run_sync("beat").lease_expires
    assert first is not None and later is not None and later > first
    with pytest.raises(RunInProgress):
        durable.resume_sync("beat")
    (tmp_path / "release-beat").write_text("1")
    out = harness.finish(owner, "run")
    assert out["status"] == "completed", out
    assert durable.get_run_sync("beat").attempts == 1


def test_cancelling_a_run_whose_process_died_ends_it_at_once(
    harness: Harness, journal: str, tmp_path: Path, effects_log: Path
) -> None:
    holder = harness.spawn("run", scenario="slow", run_id="gone")
    wait_for([tmp_path / "holding-gone"])
    kill(holder)
    durable = DurableAgent(build("slow"), journal=journal)
    durable.cancel_sync("gone")  # nobody is left to stop it at a step boundary
    info = durable.get_run_sync("gone")
    assert (info.status, info.owner, info.cancel_requested) == ("cancelled", None, True)
    assert durable.recover_sync() == []
    assert len(tool_calls(effects_log, "gone")) == 1


@pytest.mark.parametrize("reused", [False, True], ids=["owner-alive", "pid-reused"])
def test_a_reused_pid_is_not_mistaken_for_the_live_owner(journal: str, effects_log: Path, reused: bool) -> None:
    """The owner id holds the process start time: a new process that got the dead owner's pid does not hold the run."""
    durable = DurableAgent(build("quick"), journal=journal, lease_seconds=3600)
    run_id = asyncio.run(durable.start(prompt("quick", "pid"), run_id="pid"))
    pid = os.getppid()  # a live process that is not this one
    with open(f"/proc/{pid}/stat") as f:
        started = f.read().rsplit(")", 1)[1].split()[19]
    owner = f"{socket.gethostname()}:{pid}:{'1' if reused else started}"
    conn = sqlite3.connect(journal)
    conn.execute(
        "UPDATE perdure_runs SET status = 'running', owner = ?, lease_expires = ?, attempts = 1 WHERE run_id = ?",
        (owner, time.time() + 3600, run_id),
    )
    conn.commit()
    conn.close()
    if reused:
        assert durable.resume_sync(run_id).output == "stamped: stamp 7 for pid"
    else:
        with pytest.raises(RunInProgress):
            durable.resume_sync(run_id)
        assert tool_calls(effects_log) == []
