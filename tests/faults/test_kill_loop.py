"""A kill loop: several workers on one journal (``DurableAgent.serve`` and ``perdure worker``) are SIGKILLed at
random and restarted while their runs call tools, wait for approvals and denials given from another process, and
end. No run is lost, no recorded step executes again, an at-most-once call executes at most once, and no call is
ever executing in two live processes at once."""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import time
from collections import defaultdict
from typing import Any

from .conftest import Workspace, query, wait_until

RUNS = [f"k{i}" for i in range(10)]
SLOTS = 3
KILLS = 12
STATE = "SELECT run_id, status, owner, attempts, substr(error, 1, 200) FROM perdure_runs ORDER BY run_id"


def test_workers_killed_at_random_lose_nothing_and_never_double_a_call(ws: Workspace) -> None:
    seed = int(os.environ.get("FAULTS_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    env = {"FAULTS_LEASE": "5"}
    ws.call("start", ws.journal, "loop", *RUNS, env=env)
    approver = ws.spawn("approver", ws.journal, "loop", str(len(RUNS)), env=env)

    def worker(n: int) -> subprocess.Popen[str]:
        if n % 2:  # the command operators run, on the module-level Agent
            args = ("worker", "tests.faults.agents:loop", "--journal", ws.journal, "--concurrency", "4")
            return ws.spawn(*args, cli=True)
        return ws.spawn("serve", ws.journal, "loop", env=env)

    started = 0
    workers: list[subprocess.Popen[str]] = []
    for _ in range(SLOTS):
        workers.append(worker(started))
        started += 1
    killed_at: dict[int, float] = {}  # pid -> monotonic time just before its SIGKILL

    def finished() -> bool:
        rows = query(ws.journal, "SELECT status FROM perdure_runs")
        return len(rows) == len(RUNS) and all(r[0] in ("completed", "failed", "cancelled") for r in rows)

    kills, deadline = 0, time.monotonic() + 60
    while kills < KILLS and not finished() and time.monotonic() < deadline:
        # Kill a worker that is executing (it logged a model request or a tool call), a moment into its work:
        # a worker killed while still importing would prove nothing.
        active = {e["pid"] for e in ws.events()}
        busy = [slot for slot, w in enumerate(workers) if w.pid in active]
        if not busy:
            time.sleep(0.05)
            continue
        time.sleep(rng.uniform(0.05, 0.6))
        slot = rng.choice(busy)
        victim = workers[slot]
        killed_at[victim.pid] = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        kills += 1
        workers[slot] = worker(started)
        started += 1

    wait_until(finished, "every run to end", timeout=90, state=lambda: query(ws.journal, STATE))
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        _, err = w.communicate(timeout=30)
        assert w.returncode in (0, -signal.SIGTERM), err  # -SIGTERM: stopped while still starting up
    approver.communicate(timeout=30)
    assert approver.returncode == 0

    context = f"(seed {seed}: FAULTS_SEED={seed} repeats the choice of victims and pauses)"
    rows = query(ws.journal, "SELECT run_id, status, output FROM perdure_runs ORDER BY run_id")
    assert [(r[0], r[1]) for r in rows] == [(r, "completed") for r in sorted(RUNS)], context  # no run lost
    for run_id, _, output in rows:
        assert output == f'"{run_id}: 4 results"', (output, context)
    assert query(ws.journal, "PRAGMA integrity_check") == [("ok",)]
    # Each run is claimed once at its start and once after its decision; more means a kill cut an attempt short.
    assert max(r[0] for r in query(ws.journal, "SELECT attempts FROM perdure_runs")) > 2, ("no kill hit a run", context)
    _check_executions(ws, killed_at, context)


def _check_executions(ws: Workspace, killed_at: dict[int, float], context: str) -> None:
    """Every executed tool call, by idempotency key (``<run id>/<step key>``), against the journal's records."""
    starts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ends: dict[str, float] = {}
    for e in ws.events():
        if e["kind"] != "tool":
            continue
        if e["event"] == "start":
            starts[e["key"]].append(e)
        else:
            ends[e["nonce"]] = e["t"]
    steps = query(ws.journal, "SELECT run_id, key, status, result FROM perdure_steps WHERE kind = 'tool'")
    # reserve, charge, ship, notify; a denied ship never becomes a tool step (its decision is the wait step's).
    assert len(steps) == 4 * len(RUNS) - sum(int(r[-1]) % 2 for r in RUNS), context
    executed_unrecorded = set(starts) - {f"{run_id}/{key}" for run_id, key, _, _ in steps}
    assert not executed_unrecorded, ("calls executed but not in the journal (a denied one?)", executed_unrecorded)
    for run_id, key, status, result in steps:
        ident = f"{run_id}/{key}"
        execs = sorted(starts.get(ident, []), key=lambda e: e["t"])
        tool = key.rsplit("/", 1)[1].split("-")[0]
        assert status == "done", (ident, status, context)
        if tool == "charge":
            assert len(execs) <= 1, (ident, "an at-most-once call executed twice", execs, context)
        else:
            assert execs, (ident, "a recorded call that never executed", context)
        found = re.search(r"\[([0-9a-f]{32})\]", result)
        if found is None:
            assert tool == "charge" and "unknown" in result, (ident, result, context)
        else:
            # The recorded result is the last execution's: nothing executed the call again once it was recorded.
            assert found.group(1) == execs[-1]["nonce"], (ident, "a recorded step executed again", execs, context)
        for before, after in itertools.pairwise(execs):
            # The earlier execution was over (it ended, or its process was killed) before the next one began.
            over = min(ends.get(before["nonce"], float("inf")), killed_at.get(before["pid"], float("inf")))
            assert over <= after["t"], (ident, "a call executing in two live processes at once", execs, context)
