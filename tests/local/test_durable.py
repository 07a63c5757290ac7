"""``DurableAgent`` in one process: configuration errors, failed runs, error classification, cancellation,
``get_run``, group commit and the size of the journal."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from perdure import (
    Agent,
    DurableAgent,
    ModelHTTPError,
    NonDeterminismError,
    RunCancelled,
    RunContext,
    RunWaiting,
    ToolError,
    UsageLimitExceeded,
    UsageLimits,
    UserError,
)
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from perdure.models import RetryConfig
from perdure.models.function import AgentInfo, FunctionModel


def turn_of(messages: list[ModelMessage]) -> int:
    return 1 + sum(isinstance(m, ModelResponse) for m in messages)


def prompt_of(messages: list[ModelMessage]) -> str:
    first = messages[0]
    assert isinstance(first, ModelRequest)
    return str(next(p for p in first.parts if p.part_kind == "user-prompt").content)


class Counted:
    """An agent whose model calls ``tool`` with ``args`` for ``turns`` turns, then answers; calls counted."""

    def __init__(self, name: str = "counted", turns: int = 1, **agent_options: Any) -> None:
        self.model_calls = 0
        self.tool_calls: list[dict[str, Any]] = []
        self.turns = turns
        self.agent: Agent[Any, str] = Agent(
            FunctionModel(self._answer, model_name="counted-model"), name=name, **agent_options
        )

        @self.agent.tool_plain
        def note(n: int) -> str:
            """Note a number."""
            self.tool_calls.append({"n": n})
            return f"noted {n}"

    def _answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.model_calls += 1
        turn = turn_of(messages)
        if turn <= self.turns:
            return ModelResponse(parts=[ToolCallPart(tool_name="note", args={"n": turn}, tool_call_id=f"n{turn}")])
        return ModelResponse(parts=[TextPart(content=f"noted {self.turns}")])


# --- configuration -------------------------------------------------------------------------------------------


def test_an_agent_without_a_name_is_refused_with_how_to_fix(journal: str) -> None:
    with pytest.raises(UserError, match=r"needs a name.*Agent\(\.\.\., name="):
        DurableAgent(Agent(FunctionModel(lambda m, i: ModelResponse(parts=[]))), journal=journal)


def test_the_journal_defaults_to_perdure_journal_then_perdure_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERDURE_JOURNAL", str(tmp_path / "from-env.db"))
    durable = DurableAgent(Counted().agent)
    assert durable.run_sync("hi", run_id="r").output == "noted 1"
    assert durable.journal_path == tmp_path / "from-env.db"
    assert (tmp_path / "from-env.db").exists()

    monkeypatch.delenv("PERDURE_JOURNAL")
    durable = DurableAgent(Counted().agent)
    durable.run_sync("hi", run_id="r")
    assert (tmp_path / "perdure.db").exists()


def test_a_run_id_of_another_agent_is_a_user_error(journal: str) -> None:
    first = DurableAgent(Counted("first").agent, journal=journal)
    first.run_sync("hi", run_id="shared-id")
    other = Counted("second")
    second = DurableAgent(other.agent, journal=journal)
    with pytest.raises(UserError, match="belongs to agent 'first', not 'second'"):
        second.run_sync("hi", run_id="shared-id")
    with pytest.raises(UserError, match="belongs to agent 'first'"):
        second.resume_sync("shared-id")
    assert other.model_calls == 0
    with pytest.raises(UserError, match="no run 'nope'"):
        second.resume_sync("nope")


# --- failures ------------------------------------------------------------------------------------------------


def test_a_failed_run_keeps_its_journal_and_its_error(journal: str) -> None:
    calls = {"model": 0, "tool": 0}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls["model"] += 1
        return ModelResponse(parts=[ToolCallPart(tool_name="explode", args={"why": "disk"}, tool_call_id="x1")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="failing")

    @agent.tool_plain
    def explode(why: str) -> str:
        """Explode."""
        calls["tool"] += 1
        raise OSError(f"no space left: {why}")

    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(ToolError, match="no space left: disk") as first:
        durable.run_sync("go", run_id="boom")
    assert first.value.tool_name == "explode"
    # The tool's own exception is the cause, with its traceback into the user's code; the journal keeps a copy.
    assert isinstance(first.value.__cause__, OSError)
    assert first.value.traceback is not None and 'raise OSError(f"no space left: {why}")' in first.value.traceback
    info = durable.get_run_sync("boom")
    assert [s.status for s in info.steps] == ["done", "failed"]
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "ToolError"
    assert info.error["tool_name"] == "explode"
    assert info.error["error_type"] == "OSError"
    assert "no space left: disk" in info.error["message"]
    assert [s.key for s in info.steps] == ["turn/1/model", "turn/1/tool/x1"]
    assert info.finished_at is not None

    # Again, from the same process or any other: the recorded error, nothing executed.
    for again in (lambda: durable.run_sync("go", run_id="boom"), lambda: durable.resume_sync("boom")):
        with pytest.raises(ToolError, match="no space left: disk") as second:
            again()
        assert second.value.tool_name == "explode"
        assert second.value.traceback is not None and "OSError: no space left: disk" in second.value.traceback
    assert calls == {"model": 1, "tool": 1}


def test_transient_model_errors_are_retried_within_the_step(journal: str) -> None:
    failures = [ModelHTTPError("overloaded", status_code=529, transient=True)] * 2
    calls = 0

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop()
        return ModelResponse(parts=[TextPart(content="finally")])

    agent: Agent[None, str] = Agent(
        FunctionModel(answer), name="flaky", retry_config=RetryConfig(initial_delay=0.001, max_delay=0.01)
    )
    durable = DurableAgent(agent, journal=journal)
    assert durable.run_sync("go", run_id="flaky").output == "finally"
    assert calls == 3
    info = durable.get_run_sync("flaky")
    assert info.status == "completed"
    assert [(s.key, s.attempt) for s in info.steps] == [("turn/1/model", 1)]  # one step, however many tries
    assert info.usage.requests == 1


def test_a_terminal_model_error_fails_the_run_at_once_with_the_message_recorded(journal: str) -> None:
    calls = 0

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        raise ModelHTTPError("invalid request: messages[0] is empty", status_code=400, model_name="m")

    agent: Agent[None, str] = Agent(
        FunctionModel(answer), name="rejected", retry_config=RetryConfig(initial_delay=0.001)
    )
    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(ModelHTTPError, match="messages\\[0\\] is empty"):
        durable.run_sync("go", run_id="bad")
    assert calls == 1
    info = durable.get_run_sync("bad")
    assert info.status == "failed"
    assert info.error is not None
    assert info.error["type"] == "ModelHTTPError"
    assert info.error["status_code"] == 400
    assert "messages[0] is empty" in info.error["message"]
    assert [(s.key, s.status) for s in info.steps] == [("turn/1/model", "failed")]  # shown, with its error
    with pytest.raises(ModelHTTPError) as again:
        durable.run_sync("go", run_id="bad")
    assert again.value.status_code == 400
    assert calls == 1


# --- cancellation ---------------------------------------------------------------------------------------------


def approval_agent(name: str = "gated") -> tuple[Agent[None, str], list[str]]:
    ran: list[str] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn_of(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="wire", args={"cents": 500}, tool_call_id="w1")])
        return ModelResponse(parts=[TextPart(content="wired")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name=name)

    @agent.tool_plain(requires_approval=True)
    def wire(cents: int) -> str:
        """Wire money."""
        ran.append("wire")
        return "ok"

    return agent, ran


def test_cancel_a_waiting_run_is_immediate(journal: str) -> None:
    agent, ran = approval_agent()
    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("go", run_id="w")
    durable.cancel_sync("w")
    info = durable.get_run_sync("w")
    assert info.status == "cancelled"
    assert info.finished_at is not None
    assert info.pending == []  # a cancelled run waits for nobody
    with pytest.raises(RunCancelled):
        durable.resume_sync("w")
    with pytest.raises(UserError, match="run 'w' is cancelled: there is nothing left to decide"):
        durable.approve_sync("w", "w1")
    assert ran == []


def test_cancel_a_pending_run_and_a_finished_one(journal: str) -> None:
    counted = Counted()
    durable = DurableAgent(counted.agent, journal=journal)
    run_id = asyncio.run(durable.start("later"))
    assert durable.get_run_sync(run_id).status == "pending"
    durable.cancel_sync(run_id)
    assert durable.get_run_sync(run_id).status == "cancelled"
    assert asyncio.run(durable.recover()) == []  # a cancelled run is nobody's to execute
    with pytest.raises(RunCancelled):
        durable.resume_sync(run_id)
    assert counted.model_calls == 0

    durable.run_sync("now", run_id="done")
    before = durable.get_run_sync("done")
    durable.cancel_sync("done")  # a no-op on a finished run
    after = durable.get_run_sync("done")
    assert (after.status, after.output, after.error, after.cancel_requested) == ("completed", "noted 1", None, False)
    assert after.updated_at == before.updated_at


# --- get_run ----------------------------------------------------------------------------------------------------


def test_get_run_reports_usage_steps_attempts_and_pending_decisions(journal: str) -> None:
    agent, _ = approval_agent("inspected")
    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(RunWaiting) as waiting:
        durable.run_sync("go", run_id="i")
    assert waiting.value.pending == [
        {
            "run_id": "i",
            "tool_call_id": "w1",
            "tool_name": "wire",
            "args": {"cents": 500},
            "reason": "approval",
            "key": "turn/1/approval/w1",
            "since": waiting.value.pending[0]["since"],
        }
    ]
    info = durable.get_run_sync("i")
    assert info.status == "waiting"
    assert info.owner is None  # waiting holds no process
    assert [(p.tool_call_id, p.tool_name, p.args, p.reason) for p in info.pending] == [
        ("w1", "wire", {"cents": 500}, "approval")
    ]
    assert [(s.key, s.status, s.attempt) for s in info.steps] == [
        ("turn/1/model", "done", 1),
        ("turn/1/approval/w1", "waiting", 1),
    ]
    durable.approve_sync("i", "w1", note="fine")
    result = durable.resume_sync("i")
    assert result.output == "wired"

    info = durable.get_run_sync("i")
    assert info.status == "completed"
    assert info.attempts == 2
    assert info.pending == []
    assert [(s.key, s.kind, s.status, s.attempt) for s in info.steps] == [
        ("turn/1/model", "model", "done", 1),
        ("turn/1/approval/w1", "approval", "done", 1),
        ("turn/1/tool/w1", "tool", "done", 2),
        ("turn/2/model", "model", "done", 2),
    ]
    assert all(s.duration is not None and s.duration >= 0 for s in info.steps)
    assert info.steps[0].replayed_in(info.attempts) == [2]
    assert info.steps[3].replayed_in(info.attempts) == []
    usage = result.usage()
    assert (info.usage.requests, info.usage.tool_calls) == (2, 1) == (usage.requests, usage.tool_calls)
    assert info.usage.input_tokens == usage.input_tokens > 0
    assert info.usage.output_tokens == usage.output_tokens > 0
    assert sum(s.input_tokens for s in info.steps) == usage.input_tokens
    data = info.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["usage"]["total_tokens"] == usage.total_tokens


def test_the_trace_context_is_recorded_at_acceptance(journal: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    # A provider of the test's own (not the global one): the current span is what perdure records.
    tracer = TracerProvider().get_tracer("test")
    durable = DurableAgent(Counted().agent, journal=journal)
    with tracer.start_as_current_span("request") as span:
        run_id = asyncio.run(durable.start("traced"))
        ctx = span.get_span_context()
    info = durable.get_run_sync(run_id)
    assert info.trace_context is not None
    assert info.trace_context["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"

    untraced = asyncio.run(durable.start("untraced"))
    assert durable.get_run_sync(untraced).trace_context is None


def test_usage_limits_are_recorded_with_the_run(journal: str) -> None:
    counted = Counted(turns=10)
    durable = DurableAgent(counted.agent, journal=journal)
    with pytest.raises(UsageLimitExceeded, match="request_limit of 2"):
        durable.run_sync("go", run_id="limited", usage_limits=UsageLimits(request_limit=2))
    assert counted.model_calls == 2
    info = durable.get_run_sync("limited")
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "UsageLimitExceeded"
    with pytest.raises(UsageLimitExceeded):  # the limits were recorded with the run: the same on every attempt
        durable.resume_sync("limited")


# --- the journal under load ----------------------------------------------------------------------------------


def test_group_commit_shares_commits_between_concurrent_runs(journal: str) -> None:
    counted = Counted()
    durable = DurableAgent(counted.agent, journal=journal)

    async def main() -> list[str]:
        results = await asyncio.gather(*(durable.run(f"run {i}", run_id=f"g{i}") for i in range(100)))
        return [r.output for r in results]

    commits_before = durable._journal.commits
    assert asyncio.run(main()) == ["noted 1"] * 100
    commits = durable._journal.commits - commits_before
    conn = sqlite3.connect(journal)
    steps = conn.execute("SELECT count(*) FROM perdure_steps").fetchone()[0]
    statuses = conn.execute("SELECT status, count(*) FROM perdure_runs GROUP BY status").fetchall()
    conn.close()
    assert steps == 300  # model, tool, model: each recorded once
    assert statuses == [("completed", 100)]
    assert commits < steps / 2, f"{commits} commits for {steps} steps of 100 concurrent runs"


NO_LIMIT = UsageLimits(request_limit=None)


def test_the_journal_grows_linearly_with_the_conversation(journal: str) -> None:
    """History is stored once per run: each step records its own result, never the whole conversation."""
    sizes = {}
    for turns in (10, 25, 50):
        durable = DurableAgent(Counted(f"long-{turns}", turns=turns).agent, journal=journal)
        durable.run_sync("a long conversation " + "x" * 200, run_id=f"long-{turns}", usage_limits=NO_LIMIT)
        conn = sqlite3.connect(journal)
        sizes[turns] = conn.execute(
            "SELECT sum(length(result)) + sum(length(describe)) FROM perdure_steps WHERE run_id = ?",
            (f"long-{turns}",),
        ).fetchone()[0]
        conn.close()
    per_turn_early = (sizes[25] - sizes[10]) / 15
    per_turn_late = (sizes[50] - sizes[25]) / 25
    # Quadratic storage (the whole history re-recorded per request) would make late turns ~3x the early ones.
    assert per_turn_late < 1.25 * per_turn_early, sizes
    assert sizes[50] < 50 * 1000, sizes


def test_the_journal_file_grows_linearly_too(tmp_path: Path) -> None:
    sizes = {}
    for turns in (10, 25, 50):
        path = tmp_path / f"size-{turns}.db"
        durable = DurableAgent(Counted(turns=turns).agent, journal=path, durability="normal")
        durable.run_sync("x" * 2000, run_id="long", usage_limits=NO_LIMIT)
        durable._journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
        conn = sqlite3.connect(path)
        empty_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        sizes[turns] = os.path.getsize(path) - empty_pages * page
    per_turn_early = (sizes[25] - sizes[10]) / 15
    per_turn_late = (sizes[50] - sizes[25]) / 25
    assert per_turn_late <= 1.5 * per_turn_early + 4096, sizes


def test_a_tool_sees_the_same_idempotency_key_when_a_run_is_replayed(journal: str) -> None:
    seen: list[str | None] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn_of(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="pay", args={}, tool_call_id="p1")])
        return ModelResponse(parts=[TextPart(content="paid")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="keys")

    @agent.tool
    def pay(ctx: RunContext[None]) -> str:
        """Pay."""
        seen.append(ctx.idempotency_key)
        return "ok"

    durable = DurableAgent(agent, journal=journal)
    durable.run_sync("go", run_id="k")
    assert seen == ["k/turn/1/tool/p1"]


# --- decisions ---------------------------------------------------------------------------------------------------


def test_a_run_waiting_on_two_calls_continues_once_both_are_decided(journal: str) -> None:
    ran: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn_of(messages) == 1:
            return ModelResponse(
                parts=[
                    ToolCallPart(tool_name="wire", args={"cents": 100}, tool_call_id="a"),
                    ToolCallPart(tool_name="wire", args={"cents": 200}, tool_call_id="b"),
                ]
            )
        return ModelResponse(parts=[TextPart(content="wired")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="two-gates")

    @agent.tool_plain(requires_approval=True)
    def wire(cents: int) -> str:
        """Wire money."""
        ran.append(cents)
        return f"wired {cents}"

    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(RunWaiting) as waiting:
        durable.run_sync("go", run_id="two")
    assert sorted(p["tool_call_id"] for p in waiting.value.pending) == ["a", "b"]

    durable.approve_sync("two", "b", approved=False, note="too much")
    info = durable.get_run_sync("two")
    assert info.status == "waiting"  # still one call to decide
    assert [p.tool_call_id for p in info.pending] == ["a"]
    with pytest.raises(UserError, match="no call 'b' waiting"):
        durable.approve_sync("two", "b")  # decided already
    with pytest.raises(RunWaiting):
        durable.resume_sync("two")

    durable.approve_sync("two", "a")
    assert durable.get_run_sync("two").status == "pending"
    assert durable.resume_sync("two").output == "wired"
    assert ran == [100]


def test_list_runs_filters_by_status_and_limits(journal: str) -> None:
    counted = Counted("listed")
    durable = DurableAgent(counted.agent, journal=journal)
    for i in range(3):
        durable.run_sync("go", run_id=f"done-{i}")
    queued = asyncio.run(durable.start("later", run_id="queued"))
    DurableAgent(Counted("someone-else").agent, journal=journal).run_sync("go", run_id="other")

    assert [r.run_id for r in durable.list_runs_sync()] == [queued, "done-2", "done-1", "done-0"]  # newest first
    assert [r.run_id for r in durable.list_runs_sync(status="pending")] == ["queued"]
    assert [r.run_id for r in durable.list_runs_sync(status=["completed"], limit=2)] == ["done-2", "done-1"]
    done = durable.list_runs_sync(status="completed")[0]
    assert (done.output, done.usage.requests, done.steps) == ("noted 1", 2, [])


def test_a_tool_result_that_cannot_be_recorded_fails_the_run_naming_the_tool_and_type(journal: str) -> None:
    class Socket:
        pass

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(tool_name="connect", args={}, tool_call_id="c")])

    agent: Agent[None, str] = Agent(FunctionModel(answer), name="unrecordable")

    @agent.tool_plain
    def connect() -> Any:
        """Connect."""
        return Socket()

    durable = DurableAgent(agent, journal=journal)
    with pytest.raises(ToolError, match="connect") as e:
        durable.run_sync("go", run_id="sock")
    assert "Socket" in str(e.value)
    info = durable.get_run_sync("sock")
    assert info.status == "failed"
    assert info.error is not None and info.error["tool_name"] == "connect"


def test_started_runs_get_their_deps_and_message_history_from_the_worker(journal: str) -> None:
    from perdure.messages import ModelRequest as Request
    from perdure.messages import UserPromptPart

    seen: dict[str, Any] = {}

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if "first_prompt" not in seen:  # (the history holds a response already: turns don't start at 1 here)
            seen["first_prompt"] = prompt_of(messages)
            return ModelResponse(parts=[ToolCallPart(tool_name="whoami", args={}, tool_call_id="w")])
        return ModelResponse(parts=[TextPart(content="ok")])

    agent: Agent[dict[str, str], str] = Agent(FunctionModel(answer), name="with-deps", deps_type=dict)

    @agent.tool
    def whoami(ctx: RunContext[dict[str, str]]) -> str:
        """Who am I."""
        seen["deps"] = ctx.deps
        return ctx.deps["user"]

    durable = DurableAgent(agent, journal=journal)
    history = [
        Request(parts=[UserPromptPart(content="earlier question")]),
        ModelResponse(parts=[TextPart(content="earlier")]),
    ]
    run_id = asyncio.run(durable.start("now", message_history=history))
    assert asyncio.run(durable.recover(deps={"user": "ada"})) == [run_id]
    assert seen == {"first_prompt": "earlier question", "deps": {"user": "ada"}}
    result = asyncio.run(durable.wait(run_id))
    assert result.output == "ok"
    assert [m.kind for m in result.all_messages()][:2] == ["request", "response"]


def test_the_sync_methods_say_what_to_do_inside_an_event_loop(journal: str) -> None:
    durable = DurableAgent(Counted().agent, journal=journal)

    async def main() -> None:
        with pytest.raises(UserError, match=r"running event loop; use `await durable\.run\(\.\.\.\)`"):
            durable.run_sync("go", run_id="in-loop")
        with pytest.raises(UserError, match=r"await durable\.resume"):
            durable.resume_sync("in-loop")
        with pytest.raises(UserError, match=r"await durable\.recover"):
            durable.recover_sync()

    asyncio.run(main())
    assert durable.list_runs_sync() == []


def test_one_process_never_executes_a_run_twice_whatever_the_journal_path_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    counted = Counted("spelled")
    by_name = DurableAgent(counted.agent, journal="runs.db")
    by_path = DurableAgent(counted.agent, journal=tmp_path / "runs.db", durability="normal")
    run_id = asyncio.run(by_name.start("go"))

    async def both() -> list[Any]:
        return await asyncio.gather(by_name.resume(run_id), by_path.resume(run_id), return_exceptions=True)

    outcomes = asyncio.run(both())
    assert sorted(type(o).__name__ for o in outcomes) == ["AgentRunResult", "RunInProgress"]
    assert counted.tool_calls == [{"n": 1}]


def test_cancel_abandons_an_in_flight_model_request(journal: str) -> None:
    started = asyncio.Event()

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        started.set()
        await asyncio.sleep(60)  # a model that never answers
        raise AssertionError("unreachable")

    durable = DurableAgent(Agent(FunctionModel(answer), name="hung"), journal=journal, poll_interval=0.02)

    async def main() -> None:
        run = asyncio.create_task(durable.run("go", run_id="hung"))
        await started.wait()
        await durable.cancel("hung")
        with pytest.raises(RunCancelled, match="during a model request"):
            await asyncio.wait_for(run, 10)

    asyncio.run(main())
    info = durable.get_run_sync("hung")
    assert (info.status, info.steps) == ("cancelled", [])


def test_a_recorded_call_the_agent_no_longer_makes_is_non_determinism(tmp_path: Path) -> None:
    """A tool whose argument schema changed: the recorded call no longer validates, so replay would skip it."""

    def script(messages: list[Any], info: Any) -> ModelResponse:
        if sum(isinstance(m, ModelResponse) for m in messages) == 0:
            return ModelResponse(parts=[ToolCallPart(tool_name="ship", args={"order": 7}, tool_call_id="s1")])
        return ModelResponse(parts=[TextPart(content="shipped")])

    def ship_v1(order: int) -> str:
        return "ok"

    def ship_v2(order: str) -> str:  # the deploy changed the argument's type
        return "ok"

    def make(ship: Any) -> Any:
        agent = Agent(FunctionModel(script, model_name="m"), name="shipper")
        agent.tool_plain(name="ship")(ship)
        return DurableAgent(agent, journal=tmp_path / "j.db")

    make(ship_v1).run_sync("go", run_id="s")
    with pytest.raises(NonDeterminismError, match=r"turn/1/tool/s1") as caught:
        make(ship_v2).run_sync("go", run_id="s")  # the finished run replays under the changed schema
    assert "did not make this call again" in str(caught.value)


def test_a_run_id_reused_with_another_prompt_warns_and_returns_the_recorded_run(journal: str) -> None:
    from perdure.durable.base import RunIdReused
    from perdure.models.test import TestModel

    durable = DurableAgent(Agent(TestModel(), name="reuse"), journal=journal)
    first = durable.run_sync("Refund order 42", run_id="order-42")
    assert durable.run_sync("Refund order 42", run_id="order-42").output == first.output  # same prompt: silent
    with pytest.warns(RunIdReused, match="'order-42' already exists with another prompt .*'Refund order 43'"):
        again = durable.run_sync("Refund order 43", run_id="order-42")
    assert again.output == first.output
