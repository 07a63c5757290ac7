"""A worker stalled past its lease (SIGSTOP: a GC pause, a laptop lid, a frozen VM) while another worker takes its
run over is fenced when it wakes: it writes nothing, starts no further tool, never marks the run failed, and says
so. A worker whose event loop is blocked but whose process is alive keeps its run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .conftest import Workspace, outcome, pause, wait_until

LEASE = "1.0"


@pytest.mark.parametrize(
    ("gate", "recorded_by_a"),
    [
        ("tool:fetch", ["turn/1/model"]),  # paused inside a tool call
        ("model:2", ["turn/1/model", "turn/1/tool/c1"]),  # paused inside a model request
    ],
)
def test_a_worker_stopped_past_its_lease_is_fenced_when_it_wakes(
    ws: Workspace, gate: str, recorded_by_a: list[str]
) -> None:
    env = {"FAULTS_LEASE": LEASE, "FAULTS_GATE": gate}
    a = ws.spawn("run", ws.journal, "stall", "r1", env=env)
    marker = ws.dir / f"at-{gate.replace(':', '_')}"
    wait_until(marker.exists, f"worker A at {gate}")
    assert int(marker.read_text()) == a.pid
    pause(a, ws.journal)

    before = ws.steps("r1")
    assert [(s[1], s[8]) for s in before] == [(key, 1) for key in recorded_by_a]
    # Stopped, A renews nothing: its lease runs out while the process is alive (state T).
    wait_until(lambda: ws.run_row("r1")["lease_expires"] < time.time(), "A's lease to expire")

    (ws.dir / "release").write_text("")
    b = ws.call("resume", ws.journal, "stall", "r1", env=env)
    assert b == {"output": "done after 3 calls"}, b
    taken = ws.run_row("r1")
    assert (taken["status"], taken["attempts"], taken["owner"]) == ("completed", 2, None)
    steps = ws.steps("r1")
    assert steps[: len(before)] == before
    assert [s[8] for s in steps[len(before) :]] == [2] * (len(steps) - len(before))  # B's attempt, every one
    assert [s[1] for s in steps] == [
        "turn/1/model",
        "turn/1/tool/c1",
        "turn/2/model",
        "turn/2/tool/c2",
        "turn/3/model",
        "turn/3/tool/c3",
        "turn/4/model",
    ]

    os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=30)
    ended = outcome(out, err)
    assert ended["error"] == "ClaimLost" and "RunInProgress" in ended["mro"], ended
    assert "run 'r1'" in err and "lost its claim" in err, err

    # A's writes changed nothing.
    assert ws.steps("r1") == steps
    assert ws.run_row("r1") == taken
    tools = [e for e in ws.events() if e["kind"] == "tool"]
    # A started no tool after the takeover: only the fetch it was stopped inside (or had finished before).
    assert [e["name"] for e in tools if e["pid"] == a.pid and e["event"] == "start"] == ["fetch"]
    pays = [e for e in tools if e["name"] == "pay" and e["event"] == "start"]
    assert len(pays) == 1 and pays[0]["pid"] != a.pid  # at most once, and by B
    assert pays[0]["nonce"] in str(steps[3][6])  # the recorded result is that one execution's


def test_a_tool_blocking_the_event_loop_past_the_lease_keeps_its_run(ws: Workspace) -> None:
    # An `async def` tool that blocks the loop with a synchronous call: the lease keeper is a thread, so the run
    # stays owned by the live process for as long as the tool blocks, however many leases that takes.
    lease = 1.5
    env = {"FAULTS_LEASE": str(lease)}
    a = ws.spawn("run", ws.journal, "blocking", "r2", env=env)
    wait_until((ws.dir / "at-crunch").exists, "the blocking tool")
    blocked_since = time.monotonic()
    wait_until(lambda: time.monotonic() - blocked_since > 3 * lease, "three leases to pass", timeout=60)

    other = ws.call("resume", ws.journal, "blocking", "r2", env=env)
    assert other["error"] == "RunInProgress", other
    row = ws.run_row("r2")
    assert (row["status"], row["attempts"]) == ("running", 1)
    assert row["owner"].split(":")[1] == str(a.pid)

    (ws.dir / "release").write_text("")
    out, err = a.communicate(timeout=30)
    assert outcome(out, err) == {"output": "crunched"}, err
    assert (ws.run_row("r2")["status"], ws.run_row("r2")["attempts"]) == ("completed", 1)
    assert [e["pid"] for e in ws.events() if e["event"] == "start"] == [a.pid]
