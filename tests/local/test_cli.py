"""The `perdure` command on a real journal: as a user runs it (a real subprocess) where the process matters — the
worker, approvals, resume, exit codes, rich output, the demo — and in this process for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import gc
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
    for i in range(3):  # progress: each run the worker finished
        assert f"run w{i} completed" in err, err
    assert "worker stopped: the runs it held are pending again" in err
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
    assert (
        f"interrupted: resume with `perdure runs resume held --agent tests.local.agents:slow_agent --journal {journal}`"
        in err
    )
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
    assert "yes turn/1/tool/r1 done" in resumed.stderr and "yes turn/2/model done" in resumed.stderr  # progress
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


# --- what a new user expects (issue 14) -----------------------------------------------------------------------


def test_version_help_and_python_m_perdure(tmp_path: Path) -> None:
    import perdure

    version = subprocess.run(
        [sys.executable, "-m", "perdure", "--version"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert (version.returncode, version.stdout.strip()) == (0, f"perdure {perdure.__version__}")
    bare = subprocess.run([*PERDURE], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    for command in ("demo", "runs", "approve", "worker"):
        assert command in bare.stdout
    runs = cli("runs")
    assert runs.returncode == 0 and "list" in runs.stdout and "resume" in runs.stdout
    assert list(tmp_path.iterdir()) == []  # help creates no journal


def test_show_says_who_decided_when_and_why(journal: str, effects_log: Path) -> None:
    durable = DurableAgent(build("approval"), journal=journal)
    waiting_run(durable, "yes")
    waiting_run(durable, "no")
    assert (
        cli("approve", "yes", "r1", "--by", "alice", "--note", "checked the order", "--journal", journal).returncode
        == 0
    )
    assert cli("approve", "no", "r1", "--deny", "--note", "over the limit", "--journal", journal).returncode == 0

    shown = cli("runs", "show", "yes", "--journal", journal)
    assert "call r1 approved by alice at " in shown.stdout, shown.stdout
    assert "note: 'checked the order'" in shown.stdout
    denied = cli("runs", "show", "no", "--journal", journal).stdout
    assert "call r1 denied at " in denied and "note: 'over the limit'" in denied and " by " not in denied

    # Deciding again says how the call was decided, instead of "no call waiting".
    again = cli("approve", "yes", "r1", "--journal", journal)
    assert again.returncode == 2
    assert "'r1' of run 'yes' is already approved by alice" in again.stderr
    assert "(note 'checked the order')" in again.stderr and "nothing was changed" in again.stderr
    assert "already denied" in cli("approve", "no", "r1", "--journal", journal).stderr

    # The model sees the note; who decided travels with it.
    assert durable.resume_sync("no").output.endswith("over the limit")
    record = cli_json("runs", "show", "yes", "--journal", journal, "--json")
    decision = next(s for s in record["steps"] if s["key"] == "turn/1/approval/r1")
    assert decision["result"] == {"approved": True, "note": "checked the order [by alice]"}


def _lookup_agent(fail: bool) -> Any:
    from perdure import Agent
    from perdure.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from perdure.models.function import AgentInfo, FunctionModel

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="lookup", args={"order": 42}, tool_call_id="c1")])
        return ModelResponse(parts=[TextPart(content="order 42 ships tomorrow")])

    agent: Any = Agent(FunctionModel(script, model_name="scripted"), name="lookups")

    @agent.tool_plain
    def lookup(order: int) -> dict[str, Any]:
        """Look an order up."""
        if fail:
            raise ConnectionError("the order service is down")
        return {"order": order, "ships": "tomorrow"}

    return agent


def test_show_marks_failed_steps_and_renders_the_messages(journal: str) -> None:
    from perdure import AgentRunError

    DurableAgent(_lookup_agent(fail=False), journal=journal).run_sync("when does order 42 ship?", run_id="ok")
    with pytest.raises(AgentRunError):
        DurableAgent(_lookup_agent(fail=True), journal=journal).run_sync("when does order 42 ship?", run_id="bad")

    failed = cli("runs", "show", "bad", "--journal", journal)
    assert failed.returncode == 0, failed.stderr
    assert "failed step turn/1/tool/c1: ConnectionError: the order service is down" in failed.stdout, failed.stdout
    assert 'raise ConnectionError("the order service is down")' in failed.stdout  # the tool's own line
    timeline = [line for line in failed.stdout.splitlines() if "turn/1/tool/c1" in line and "│" in line]
    assert timeline and "failed" in timeline[0] and "executed" not in timeline[0]

    talk = cli("runs", "show", "ok", "--messages", "--journal", journal)
    assert talk.returncode == 0, talk.stderr
    lines = talk.stdout[talk.stdout.index("messages") :]
    for expected in (
        "user: when does order 42 ship?",
        'assistant → lookup({"order": 42}) call c1',
        'tool lookup ← {"order": 42, "ships": "tomorrow"}',
        "assistant: order 42 ships tomorrow",
    ):
        assert expected in lines, (expected, lines)
    broken = cli("runs", "show", "bad", "--messages", "--journal", journal).stdout
    assert "tool lookup raised ConnectionError: the order service is down" in broken


def test_a_damaged_journal_gives_one_clear_message_and_is_left_as_it_was(journal: str, effects_log: Path) -> None:
    durable = DurableAgent(build("plain"), journal=journal)
    for i in range(60):
        durable.run_sync(prompt("plain", f"p{i}") + " " + "x" * 500, run_id=f"p{i}")
    del durable
    conn = sqlite3.connect(journal)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 6
    with open(journal, "r+b") as f:  # every page but the first (header, schema) and the last: tables and indexes
        f.seek(page_size * 2)
        f.write(b"\x0d" + b"\xff" * (page_size * (pages - 3) - 1))
    before = Path(journal).read_bytes()

    for args in (["runs", "list"], ["runs", "show", "p30"], ["runs", "prune", "--older-than", "0s"]):
        out = cli(*args, "--journal", journal)
        assert out.returncode == 2, (args, out.stdout)
        assert out.stderr.count("\n") == 1, out.stderr  # one message, no traceback
        assert f"the journal {journal} is damaged" in out.stderr and "perdure changed nothing" in out.stderr
        assert f'sqlite3 {journal} ".recover"' in out.stderr
    assert Path(journal).read_bytes() == before


def test_read_commands_never_create_or_change_a_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in (["runs", "list"], ["runs", "show", "x"], ["approve", "x", "c1"], ["runs", "cancel", "x"]):
        out = cli(*args, "--journal", str(empty))
        assert out.returncode == 2 and "empty file (0 bytes)" in out.stderr and "untouched" in out.stderr
        missing = cli(*args, "--journal", str(tmp_path / "missing.db"))
        assert missing.returncode == 2 and "no journal at" in missing.stderr
    dbos = cli("runs", "list", "--dbos", f"sqlite:///{tmp_path / 'typo.sqlite'}")
    assert dbos.returncode == 2 and "no DBOS system database at" in dbos.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"] and empty.read_bytes() == b""

    # A journal in use: reading it leaves the file byte for byte as it was, and no file beside it.
    journal = tmp_path / "journal.db"
    DurableAgent(_lookup_agent(fail=False), journal=journal).run_sync("when does order 42 ship?", run_id="ok")
    gc.collect()  # the agent's connection closes: the journal at rest (its WAL checkpointed into the file)
    with contextlib.closing(sqlite3.connect(journal)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # at rest even if a connection of this process lingers
    before = journal.read_bytes()
    files = sorted(p.name for p in tmp_path.iterdir())
    for args in (["runs", "list"], ["runs", "show", "ok", "--messages"], ["runs", "list", "--stuck", "1s", "--json"]):
        out = perdure_cli(*args, "--journal", str(journal))
        assert out.returncode == 0, out.stderr
    assert journal.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_ctrl_c_in_resume_stops_cleanly_and_says_how_to_resume(
    journal: str, effects_log: Path, tmp_path: Path, reap: list[subprocess.Popen[str]]
) -> None:
    durable = DurableAgent(build("slow"), journal=journal)
    run_id = asyncio.run(durable.start(prompt("slow", "held"), run_id="held"))
    spec = "tests.local.agents:slow_agent"
    resume = subprocess.Popen(
        [*PERDURE, "runs", "resume", run_id, "--agent", spec, "--journal", journal],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reap.append(resume)
    deadline = time.monotonic() + 30
    while not (tmp_path / "holding-held").exists():
        assert resume.poll() is None, resume.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    resume.send_signal(signal.SIGINT)
    (tmp_path / "release-held").write_text("1")  # a tool's thread cannot be killed: let it end
    out, err = resume.communicate(timeout=30)
    assert resume.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted: resume with `perdure runs resume held --agent {spec} --journal {journal}`" in err
    assert "held turn/1/model done" in err  # the progress it made before
    assert out == ""
    again = perdure_cli("runs", "resume", "held", "--agent", spec, "--journal", journal)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == "released: hold=held"
