"""The `perdure` command on a real journal: as a user runs it (a real subprocess) where the process matters — the
worker, approvals, resume, exit codes, rich output, the demo — and in this process for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from perdure import DurableAgent, RunWaiting
from perdure.cli import main

from .agents import build, prompt, quick
from .conftest import PERDURE, ROOT, perdure_cli, tool_calls


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`perdure ARGS` in this process (the same code as the command, without a process start each time)."""
    out, err, path = io.StringIO(), io.StringIO(), list(sys.path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.path[:] = path
    return subprocess.CompletedProcess(["perdure", *args], code, out.getvalue(), err.getvalue())


def cli_json(*args: str) -> Any:
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def waiting_run(durable: DurableAgent[Any, Any], run_id: str) -> None:
    with pytest.raises(RunWaiting):
        durable.run_sync(prompt("approval", run_id), run_id=run_id)


# --- worker ----------------------------------------------------------------------------------------------------


def start_worker(journal: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PERDURE, "worker", "tests.local.agents:worker_agent", "--journal", journal, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_worker_executes_started_runs(
    journal: str, effects_log: Path, reap: list[subprocess.Popen[str]], stop: signal.Signals
) -> None:
    durable = DurableAgent(quick("worker"), journal=journal)  # the same agent the worker imports

    async def main() -> list[str]:
        ids = [await durable.start(prompt("worker", f"w{i}"), run_id=f"w{i}") for i in range(3)]
        worker = start_worker(journal, "--concurrency", "2")
        reap.append(worker)
        results = [await durable.wait(r, timeout=30) for r in ids]
        worker.send_signal(stop)
        return [r.output for r in results]

    assert asyncio.run(main()) == [f"stamped: stamp 7 for w{i}" for i in range(3)]
    worker = reap[0]
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err  # a worker stopped by a signal exits cleanly
    assert "perdure worker: agent local-worker" in out
    for i in range(3):
        assert len(tool_calls(effects_log, f"w{i}")) == 1
        assert durable.get_run_sync(f"w{i}").status == "completed"


def test_a_worker_stopped_mid_run_hands_the_run_back(
    journal: str, effects_log: Path, tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    """SIGTERM (a deploy, `docker stop`) while a run is executing: the run is left for the next worker."""
    durable = DurableAgent(build("slow"), journal=journal)
    run_id = asyncio.run(durable.start(prompt("slow", "held"), run_id="held"))
    worker = subprocess.Popen(
        [*PERDURE, "worker", "tests.local.agents:slow_agent", "--journal", journal],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reap.append(worker)
    deadline = time.monotonic() + 30
    while not (tmp_path / "holding-held").exists():
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    worker.send_signal(signal.SIGTERM)
    while durable.get_run_sync(run_id).status != "pending":  # handed back while its tool is still in flight
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (tmp_path / "release-held").write_text("1")  # a tool's thread cannot be killed: let it end
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    handed_back = durable.get_run_sync(run_id)
    assert (handed_back.status, handed_back.owner) == ("pending", None)  # any worker may take it now
    assert durable.resume_sync(run_id).output == "released: hold=held"
    assert durable.get_run_sync(run_id).attempts == 2


def test_a_worker_for_a_durable_agent_serves_its_own_journal(
    tmp_path: Path, effects_log: Path, monkeypatch: pytest.MonkeyPatch, reap: list[subprocess.Popen[str]]
) -> None:
    app_journal = str(tmp_path / "app.db")
    monkeypatch.setenv("PERDURE_APP_JOURNAL", app_journal)
    monkeypatch.delenv("PERDURE_JOURNAL", raising=False)
    durable = DurableAgent(quick("app"), journal=app_journal)

    # An explicit --journal naming another file is refused, never silently ignored.
    refused = cli("worker", "tests.local.durable_app:durable", "--journal", str(tmp_path / "other.db"))
    assert refused.returncode == 2
    assert "is a DurableAgent on the journal" in refused.stderr and "app.db" in refused.stderr

    run_id = asyncio.run(durable.start(prompt("app", "a1"), run_id="a1"))
    worker = subprocess.Popen(
        [*PERDURE, "worker", "tests.local.durable_app:durable"],  # no --journal: the DurableAgent's own
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reap.append(worker)
    assert asyncio.run(durable.wait(run_id, timeout=30)).output == "stamped: stamp 7 for a1"
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert not (tmp_path / "perdure.db").exists()


# --- approvals and inspection ------------------------------------------------------------------------------------


def test_approve_and_deny_from_the_cli(journal: str, effects_log: Path) -> None:
    durable = DurableAgent(build("approval"), journal=journal)
    waiting_run(durable, "yes")
    waiting_run(durable, "no")

    listed = cli_json("runs", "list", "--journal", journal, "--json", "--status", "waiting")
    assert sorted(r["run_id"] for r in listed) == ["no", "yes"]
    assert {r["status"] for r in listed} == {"waiting"}

    shown = cli_json("runs", "show", "yes", "--journal", journal, "--json")
    assert shown["status"] == "waiting"
    assert [(p["tool_call_id"], p["tool_name"], p["args"]) for p in shown["pending"]] == [
        ("r1", "refund", {"amount": 4200})
    ]

    approved = perdure_cli("approve", "yes", "r1", "--journal", journal)
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    denied = perdure_cli("approve", "no", "r1", "--deny", "--note", "over the limit", "--journal", journal)
    assert denied.returncode == 0, denied.stderr
    assert "denied" in denied.stdout

    assert cli_json("runs", "show", "yes", "--journal", journal, "--json")["status"] == "pending"
    resumed = perdure_cli("runs", "resume", "yes", "--agent", "tests.local.agents:approval_agent", "--journal", journal)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == "refund: refund=refunded 4200"
    no = durable.resume_sync("no").output
    assert no.startswith("refund: refund=The user denied this tool call; it was not run.")
    assert "over the limit" in no
    assert len(tool_calls(effects_log, "yes", "refund")) == 1
    assert tool_calls(effects_log, "no", "refund") == []

    shown = cli_json("runs", "show", "yes", "--journal", journal, "--json")
    assert shown["status"] == "completed"
    assert shown["output"] == "refund: refund=refunded 4200"
    assert shown["attempts"] == 2
    assert [(s["key"], s["status"], s["attempt"]) for s in shown["steps"]] == [
        ("turn/1/model", "done", 1),
        ("turn/1/approval/r1", "done", 1),
        ("turn/1/tool/r1", "done", 2),
        ("turn/2/model", "done", 2),
    ]
    assert shown["usage"]["requests"] == 2
    assert shown["usage"]["tool_calls"] == 1

    human = perdure_cli("runs", "show", "yes", "--journal", journal)
    assert human.returncode == 0, human.stderr
    for word in ("executed", "replayed", "turn/1/model", "turn/1/tool/r1", "completed", "attempt 2"):
        assert word in human.stdout, (word, human.stdout)


def test_cancel_and_prune_from_the_cli(journal: str, effects_log: Path) -> None:
    durable = DurableAgent(build("approval"), journal=journal)
    waiting_run(durable, "to-cancel")
    waiting_run(durable, "still-waiting")
    plain = DurableAgent(build("plain"), journal=journal)
    plain.run_sync(prompt("plain", "done"), run_id="done")
    pending = asyncio.run(plain.start(prompt("plain", "queued"), run_id="queued"))

    cancelled = perdure_cli("runs", "cancel", "to-cancel", "--journal", journal)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    assert cli_json("runs", "show", "to-cancel", "--journal", journal, "--json")["status"] == "cancelled"

    pruned = cli_json("runs", "prune", "--older-than", "0s", "--journal", journal, "--json")
    assert sorted(pruned) == ["done", "to-cancel"]
    remaining = {r["run_id"]: r["status"] for r in cli_json("runs", "list", "--journal", journal, "--json")}
    assert remaining == {"still-waiting": "waiting", pending: "pending"}
    conn = sqlite3.connect(journal)
    step_runs = {r[0] for r in conn.execute("SELECT DISTINCT run_id FROM perdure_steps")}
    conn.close()
    assert step_runs == {"still-waiting"}  # the pruned runs' steps went with them

    kept = cli_json("runs", "prune", "--older-than", "30d", "--journal", journal, "--json")
    assert kept == []


def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path, journal: str, effects_log: Path) -> None:
    missing = perdure_cli("runs", "list", "--journal", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert "no journal at" in missing.stderr and "nope.db" in missing.stderr
    assert not (tmp_path / "nope.db").exists()  # looking never creates a journal

    DurableAgent(build("plain"), journal=journal).run_sync(prompt("plain", "p1"), run_id="p1")
    unknown = cli("runs", "show", "ghost", "--journal", journal)
    assert unknown.returncode == 2
    assert "no run 'ghost'" in unknown.stderr
    no_call = cli("approve", "p1", "c9", "--journal", journal)
    assert no_call.returncode == 2
    assert "completed" in no_call.stderr
    not_a_journal = tmp_path / "notes.txt"
    not_a_journal.write_text("hello")
    refused = cli("runs", "list", "--journal", str(not_a_journal))
    assert refused.returncode == 2
    assert "not an SQLite database" in refused.stderr
    assert not_a_journal.read_text() == "hello"
    cancel_ghost = cli("runs", "cancel", "ghost", "--journal", journal)
    assert cancel_ghost.returncode == 2
    assert "no run 'ghost'" in cancel_ghost.stderr
    bad_duration = cli("runs", "prune", "--older-than", "soon", "--journal", journal)
    assert bad_duration.returncode == 2
    assert "30d" in bad_duration.stderr
    bad_agent = cli("worker", "no_such_module:agent", "--journal", journal)
    assert bad_agent.returncode == 2
    assert "cannot import 'no_such_module'" in bad_agent.stderr


# --- the demo ------------------------------------------------------------------------------------------------------


def test_perdure_demo(tmp_path: Path) -> None:
    demo = perdure_cli("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "exactly once" in demo.stdout
    assert "replayed" in demo.stdout and "executed" in demo.stdout
    assert "charge_card executed 1 time(s)" in demo.stdout
    assert list(tmp_path.iterdir()) == []  # the demo leaves nothing behind
