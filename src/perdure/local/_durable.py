"""``DurableAgent``: durable runs on the embedded SQLite journal."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .._agent import Agent
from .._engine import new_run_id, perform_model_step, perform_tool_step
from .._exceptions import (
    AgentRunError,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
    RunInProgress,
    RunWaiting,
    UserError,
    error_from_record,
)
from .._loop import AgentRunResult, RunInput, drive
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, WaitStep, step_kind
from .._tools import ToolOutcome
from ..durable.codec import decode_input, decode_result, encode_input, encode_output, encode_result
from ..durable.owner import is_dead_local_owner, this_owner
from ..messages import ModelMessage
from ..models import Model, ModelSettings
from ..runs import PendingDecision, RunInfo, StepInfo
from ..usage import Usage, UsageLimits
from ._journal import FINAL_STATUSES, Durability, Journal, RunRow, StepRow, dumps, now

if TYPE_CHECKING:
    from ..observability.engine import RunAttempt

__all__ = ["DurableAgent"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

DEFAULT_JOURNAL = "perdure.db"
ENGINE = "local"


class _Suspend(Exception):
    """A step is waiting for a human: the run stops here and holds no process."""


# Runs executing in this process, by (journal path, run id): never two executions at once.
_ACTIVE: dict[tuple[str, str], asyncio.Task[Any] | None] = {}
_JOURNALS: weakref.WeakValueDictionary[tuple[str, str], Journal] = weakref.WeakValueDictionary()


def _open_journal(path: str, durability: Durability) -> Journal:
    key = (os.path.realpath(path), durability)
    journal = _JOURNALS.get(key)
    if journal is None:
        journal = Journal(path, durability=durability)
        _JOURNALS[key] = journal
    return journal


class _Watcher:
    """Per event loop: renews the leases of this process's runs and notices cancellations from elsewhere."""

    def __init__(self, journal: Journal, lease: float, poll: float) -> None:
        self.journal = journal
        self.lease = lease
        self.poll = poll
        self.runs: dict[str, _Executor] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, executor: _Executor) -> None:
        self.runs[executor.run_id] = executor
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def remove(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        if not self.runs and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _watch(self) -> None:
        last_renew = time.monotonic()
        owner = this_owner()
        while self.runs:
            await asyncio.sleep(self.poll)
            ids = list(self.runs)
            marks = ",".join("?" * len(ids))
            rows = self.journal.query(
                f"SELECT run_id FROM perdure_runs WHERE cancel_requested = 1 AND run_id IN ({marks})", ids
            )
            for (run_id,) in rows:
                executor = self.runs.get(run_id)
                if executor is not None:
                    executor.cancel()
            if time.monotonic() - last_renew > self.lease / 3:
                last_renew = time.monotonic()
                self.journal.write(
                    [
                        (
                            f"UPDATE perdure_runs SET lease_expires = ? WHERE owner = ? AND status = 'running' "
                            f"AND run_id IN ({marks})",
                            [now() + self.lease, owner, *ids],
                        )
                    ]
                )


class _Executor:
    """Executes or replays the steps of one attempt of one run."""

    def __init__(
        self,
        durable: DurableAgent[Any, Any],
        run_id: str,
        attempt: int,
        model: Model,
        deps: Any,
        prompt: str | None,
        recorded: list[StepRow],
    ) -> None:
        self.durable = durable
        self.journal = durable._journal
        self.run_id = run_id
        self.attempt = attempt
        self.model = model
        self.deps = deps
        self.prompt = prompt
        self.recorded = {s.key: s for s in recorded}
        self.seq = max((s.seq for s in recorded), default=0)
        self.replayed: list[str] = []
        self.executed: list[str] = []
        self.cancelled = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._unsynced: list[asyncio.Future[None]] = []
        self._consumed: set[str] = set()

    def record(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        """Queue a write for the next group commit without waiting for it (see ``barrier``)."""
        self._unsynced.append(self.journal.queue(statements))

    async def barrier(self) -> None:
        """Wait until everything this attempt recorded is durable.

        A step's result need not be on disk before the loop moves on to a model request (a model request has no
        side effects: if a crash loses its record, it is simply asked again). It must be on disk before anything
        that acts on it: a tool call, a suspension, the run's end. So writes are queued, and this barrier stands
        before each of those — with an instant model, a tool's result and the next model answer share one commit.
        """
        if self._unsynced:
            pending, self._unsynced = self._unsynced, []
            if self.solo():
                # The only run in this process: nobody to share a commit with, so don't wait a loop turn for one.
                self.journal.flush_now()
            for future in pending:
                if not future.done():
                    await future
                future.result()

    def solo(self) -> bool:
        return len(self.durable._watcher().runs) <= 1

    def cancel(self) -> None:
        self.cancelled = True
        for task in self._inflight:
            task.cancel()  # an in-flight model request is abandoned

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def execute(self, step: Step) -> StepResult:
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id!r} was cancelled")
        rec = self.recorded.get(step.key)
        if isinstance(step, ModelStep) and self.recorded:
            self._check_previous_turn_consumed(step)
        if rec is not None:
            self._consumed.add(step.key)
            if rec.kind != step.kind or rec.describe != step.describe():
                raise NonDeterminismError(
                    run_id=self.run_id, step_key=step.key, recorded=rec.describe, requested=step.describe()
                )
            if rec.status == "done" and rec.result is not None:
                self.replayed.append(step.key)
                return decode_result(step, rec.result)
            if rec.status == "waiting":
                raise _Suspend(step.key)
            if isinstance(step, ToolStep) and rec.status == "started":
                # An at-most-once call was interrupted: never run it again; its outcome is unknown.
                outcome = ToolOutcome(kind="unknown")
                await self._record_done(step, outcome, rec.seq, rec.started_at, update=True)
                return outcome
        else:
            self._check_divergence(step)
        if isinstance(step, ModelStep):
            return await self._model(step)
        if isinstance(step, ToolStep):
            return await self._tool(step, rec)
        return await self._wait(step)

    def _check_previous_turn_consumed(self, step: ModelStep) -> None:
        """Before turn N's model request, every recorded call of turn N-1 must have been asked for again.

        A call the agent no longer makes (its arguments stopped validating against a changed schema, say) would
        otherwise be skipped silently, and later recorded answers replayed against a different conversation.
        """
        prefix = f"turn/{step.turn - 1}/"
        for key, rec in self.recorded.items():
            if key.startswith(prefix) and rec.kind != "model" and key not in self._consumed:
                raise NonDeterminismError(
                    run_id=self.run_id,
                    step_key=key,
                    recorded=rec.describe,
                    requested=f"no such step before {step.describe()} (the agent did not make this call again)",
                )

    def _check_divergence(self, step: Step) -> None:
        """A new step is about to execute: the journal must not hold steps of a path the loop left."""
        turn = step.turn
        for rec in self.recorded.values():
            rec_turn = int(rec.key.split("/")[1])
            if rec_turn > turn or (step.kind == "model" and rec_turn == turn):
                raise NonDeterminismError(
                    run_id=self.run_id, step_key=rec.key, recorded=rec.describe, requested=step.describe()
                )

    async def _model(self, step: ModelStep) -> StepResult:
        started = now()
        task = asyncio.ensure_future(perform_model_step(self.model, step, self.durable.agent.retry_config))
        self._inflight.add(task)
        try:
            response = await task
        except asyncio.CancelledError:
            if self.cancelled:
                raise RunCancelled(f"run {self.run_id!r} was cancelled during a model request") from None
            raise
        finally:
            self._inflight.discard(task)
        self.executed.append(step.key)
        self.record(
            [
                (
                    "INSERT INTO perdure_steps (run_id, key, seq, kind, describe, status, result, attempt, "
                    "started_at, finished_at, input_tokens, output_tokens) VALUES (?,?,?,?,?,'done',?,?,?,?,?,?)",
                    (
                        self.run_id,
                        step.key,
                        self._next_seq(),
                        step.kind,
                        step.describe(),
                        encode_result(response),
                        self.attempt,
                        started,
                        now(),
                        response.usage.input_tokens,
                        response.usage.output_tokens,
                    ),
                )
            ]
        )
        return response

    async def _tool(self, step: ToolStep, rec: StepRow | None) -> StepResult:
        started = now()
        seq = rec.seq if rec is not None else self._next_seq()
        if step.side_effects == "at_most_once":
            self.record(
                [
                    (
                        "INSERT OR REPLACE INTO perdure_steps (run_id, key, seq, kind, describe, status, attempt, "
                        "started_at) VALUES (?,?,?,?,?,'started',?,?)",
                        (self.run_id, step.key, seq, step.kind, step.describe(), self.attempt, started),
                    )
                ]
            )
        await self.barrier()  # what led to this call (and its at-most-once mark) is durable before it acts
        outcome = await perform_tool_step(
            self.durable.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt
        )
        self.executed.append(step.key)
        await self._record_done(step, outcome, seq, started, update=step.side_effects == "at_most_once")
        # A tool's result is durable before the loop moves on: a crash from here on never runs it again.
        await self.barrier()
        return outcome

    async def _record_done(self, step: Step, result: StepResult, seq: int, started: float, *, update: bool) -> None:
        verb = "INSERT OR REPLACE" if update else "INSERT"
        self.record(
            [
                (
                    f"{verb} INTO perdure_steps (run_id, key, seq, kind, describe, status, result, attempt, "
                    "started_at, finished_at) VALUES (?,?,?,?,?,'done',?,?,?,?)",
                    (
                        self.run_id,
                        step.key,
                        seq,
                        step.kind,
                        step.describe(),
                        encode_result(result),
                        self.attempt,
                        started,
                        now(),
                    ),
                )
            ]
        )

    async def _wait(self, step: WaitStep) -> StepResult:
        payload = dumps(
            {
                "tool_name": step.tool_name,
                "args": step.args,
                "tool_call_id": step.tool_call_id,
                "reason": step.reason,
            }
        )
        self.record(
            [
                (
                    "INSERT INTO perdure_steps (run_id, key, seq, kind, describe, status, payload, attempt, "
                    "started_at) VALUES (?,?,?,?,?,'waiting',?,?,?)",
                    (
                        self.run_id,
                        step.key,
                        self._next_seq(),
                        step.kind,
                        step.describe(),
                        payload,
                        self.attempt,
                        now(),
                    ),
                )
            ]
        )
        _wait_started(self.durable.name)
        raise _Suspend(step.key)


class DurableAgent(Generic[DepsT, OutputT]):
    """Durable runs of ``agent`` on an embedded SQLite journal: nothing to install or start.

    ::

        durable = DurableAgent(agent)                       # journal: ./perdure.db or $PERDURE_JOURNAL
        result = await durable.run("Refund order 42", run_id="refund-42")

    Run the same ``run_id`` again and a finished run returns its recorded result; a run whose process died is
    resumed where it stopped, without repeating recorded model requests or tool calls.

    Args:
        agent: the agent; it must have a ``name`` (runs are matched to agents by name).
        journal: the journal file (default ``$PERDURE_JOURNAL`` or ``perdure.db``).
        durability: ``"full"`` (survives power loss; default) or ``"normal"`` (survives process crashes).
        lease_seconds: how long a run stays owned by a silent process on another machine.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        journal: str | os.PathLike[str] | None = None,
        durability: Durability = "full",
        lease_seconds: float = 30.0,
        poll_interval: float = 0.25,
    ) -> None:
        if not isinstance(agent, Agent):
            raise UserError(f"DurableAgent wraps an Agent, not {type(agent).__name__}")
        if not agent.name:
            raise UserError(
                "a durable agent needs a name: runs in the journal are matched to their agent by it. "
                "Pass Agent(..., name='support')"
            )
        self.agent = agent
        self.name: str = agent.name
        path = journal if journal is not None else os.environ.get("PERDURE_JOURNAL") or DEFAULT_JOURNAL
        self._journal = _open_journal(os.fspath(path), durability)
        self.journal_path = self._journal.path
        # Runs executing in this process are keyed by the file itself: two spellings of one path are one journal.
        self._active_path = os.path.realpath(self.journal_path)
        self.lease_seconds = lease_seconds
        self._fp: tuple[tuple[int, int], str] | None = None
        self.poll_interval = poll_interval
        self._watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"DurableAgent({self.name!r}, journal={str(self.journal_path)!r})"

    # --- starting runs ---------------------------------------------------------------------------------

    async def run(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run durably to the output.

        With a ``run_id`` that exists: a finished run returns its recorded result (nothing executes), an orphaned
        run is resumed, a run executing in a live process raises ``RunInProgress``. A run that reaches a tool
        with ``requires_approval=True`` is suspended and this raises ``RunWaiting``.
        """
        run_id = run_id or new_run_id()
        created = await self._accept(run_id, prompt, message_history, model, usage_limits, model_settings, "running")
        if created:
            return await self._execute(run_id, deps, fresh=True)
        return await self.resume(run_id, deps=deps)

    def run_sync(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """``run`` for code without an event loop."""
        _outside_event_loop("run")
        return asyncio.run(
            self.run(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        )

    async def start(
        self,
        prompt: str | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """Accept a run durably and return its id at once; a worker (``serve()``, ``perdure worker``) executes it."""
        run_id = run_id or new_run_id()
        await self._accept(run_id, prompt, message_history, model, usage_limits, model_settings, "pending")
        return run_id

    async def _accept(
        self,
        run_id: str,
        prompt: str | None,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
        status: Literal["running", "pending"],
    ) -> bool:
        """Commit the run row (accepted = durable). False if the run id already exists.

        The commit is shared with concurrent acceptances and steps in this process (group commit); the run
        is durable before this returns, so before its first step.
        """
        if model is not None and not isinstance(model, str):
            raise UserError("a durable run records its model by name: pass a model string, e.g. 'openai:gpt-4.1'")
        if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise UserError(f"run_id must be a non-empty string of at most 200 characters, not {run_id!r}")
        run = RunInput(
            prompt=prompt,
            run_id=run_id,
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model_name=model,
        )
        t = now()
        owner, lease = (this_owner(), t + self.lease_seconds) if status == "running" else (None, None)
        if self._journal.get_run(run_id) is not None:
            return self._existing(run_id)
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO perdure_runs (run_id, agent, fingerprint, status, input, owner, "
                "lease_expires, attempts, trace_context, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    self.name,
                    self._fingerprint(),
                    status,
                    encode_input(run),
                    owner,
                    lease,
                    1 if status == "running" else 0,
                    _trace_context(self.name, run_id),
                    t,
                    t,
                ),
            )
        ]
        try:
            await self._journal.queue(statements)
        except sqlite3.IntegrityError:
            return self._existing(run_id)  # another process accepted the same run id first
        _run_started(self.name)
        return True

    def _existing(self, run_id: str) -> bool:
        row = self._journal.get_run(run_id)
        if row is not None and row.agent != self.name:
            raise UserError(f"run {run_id!r} belongs to agent {row.agent!r}, not {self.name!r}")
        return False

    # --- executing ----------------------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        # Hashing the tool schemas costs more than a step; recompute only when the agent's tools change.
        key = (len(self.agent._tools), id(self.agent._output))
        if self._fp is None or self._fp[0] != key:
            self._fp = (key, self.agent.fingerprint())
        return self._fp[1]

    def _claim(self, run_id: str) -> RunRow:
        """Take ownership of a run that no live process is executing; returns the row (maybe final)."""
        row = self._journal.get_run(run_id)
        if row is None:
            raise UserError(f"no run {run_id!r} in {self.journal_path}")
        if row.agent != self.name:
            raise UserError(f"run {run_id!r} belongs to agent {row.agent!r}, not {self.name!r}")
        if row.status in FINAL_STATUSES or row.status == "waiting":
            return row
        key = (self._active_path, run_id)
        if key in _ACTIVE:
            raise RunInProgress(run_id, row.owner)
        if row.status == "running" and row.owner and not self._orphaned(row):
            raise RunInProgress(run_id, row.owner)
        t = now()
        counts = self._journal.write_counts(
            [
                (
                    "UPDATE perdure_runs SET status = 'running', owner = ?, lease_expires = ?, "
                    "attempts = attempts + 1, updated_at = ? WHERE run_id = ? AND status = ? AND owner IS ?",
                    (this_owner(), t + self.lease_seconds, t, run_id, row.status, row.owner),
                )
            ]
        )
        if counts[0] == 0:
            raise RunInProgress(run_id)
        claimed = self._journal.get_run(run_id)
        assert claimed is not None
        return claimed

    @staticmethod
    def _orphaned(row: RunRow) -> bool:
        if row.owner == this_owner():
            return True  # this process, but not executing it: a crashed attempt in this very process
        if is_dead_local_owner(row.owner):
            return True
        return row.lease_expires is not None and row.lease_expires < now()

    def _watcher(self) -> _Watcher:
        loop = asyncio.get_running_loop()
        watcher = self._watchers.get(loop)
        if watcher is None:
            watcher = _Watcher(self._journal, self.lease_seconds, self.poll_interval)
            self._watchers[loop] = watcher
        return watcher

    async def _execute(self, run_id: str, deps: Any, *, fresh: bool = False) -> AgentRunResult[OutputT]:
        row = self._journal.get_run(run_id)
        assert row is not None
        key = (self._active_path, run_id)
        if key in _ACTIVE:
            raise RunInProgress(run_id, row.owner)
        _ACTIVE[key] = asyncio.current_task()
        run = decode_input(run_id, row.input)
        executor: _Executor | None = None
        try:
            model = self.agent.resolve_model(run.model_name)
            recorded = [] if fresh else self._journal.steps(run_id)
            executor = _Executor(self, run_id, row.attempts, model, deps, run.prompt, recorded)
            if row.cancel_requested:
                executor.cancelled = True
            watcher = self._watcher()
            watcher.add(executor)
            try:
                with _observe_attempt(self._journal, self.agent, row, run.prompt, model, executor) as obs:
                    result = await drive(self.agent.new_loop(run, deps, model), executor.execute)
                    obs.set_result(result)
            finally:
                watcher.remove(run_id)
            # The run's end shares one commit with its last steps.
            executor.record(
                _finish_statements(run_id, "completed", output=encode_output(result.output), usage=result.usage())
            )
            await executor.barrier()
        except _Suspend:
            assert executor is not None
            await executor.barrier()
            pending = self._pending(run_id)
            self._journal.write(
                [
                    (
                        # A decision that arrived while this attempt was suspending leaves the run pending (to
                        # continue), never waiting with nothing left to decide.
                        "UPDATE perdure_runs SET status = CASE WHEN EXISTS (SELECT 1 FROM perdure_steps s "
                        "WHERE s.run_id = perdure_runs.run_id AND s.status = 'waiting') THEN 'waiting' "
                        "ELSE 'pending' END, owner = NULL, lease_expires = NULL, updated_at = ? "
                        "WHERE run_id = ? AND status = 'running'",
                        (now(), run_id),
                    )
                ]
            )
            raise RunWaiting(run_id, [p.__dict__ for p in pending]) from None
        except RunCancelled as e:
            await _settle(executor)
            self._finish(run_id, "cancelled", error=e.to_record())
            raise
        except PerdureError as e:
            await _settle(executor)
            self._finish(run_id, "failed", error=e.to_record())
            raise
        except (Exception, asyncio.CancelledError) as e:
            if isinstance(e, asyncio.CancelledError):
                # The caller's task was cancelled, not the run: leave it for any process to resume.
                self._journal.write(
                    [
                        (
                            "UPDATE perdure_runs SET status = 'pending', owner = NULL, lease_expires = NULL, "
                            "updated_at = ? WHERE run_id = ? AND status = 'running'",
                            (now(), run_id),
                        )
                    ]
                )
                raise
            record = {"type": type(e).__name__, "message": f"{type(e).__name__}: {e}"}
            await _settle(executor)
            self._finish(run_id, "failed", error=record)
            raise AgentRunError(f"run {run_id!r} failed: {type(e).__name__}: {e}") from e
        finally:
            _ACTIVE.pop(key, None)
        return result

    def _finish(
        self,
        run_id: str,
        status: str,
        *,
        output: str | None = None,
        error: dict[str, Any] | None = None,
        usage: Usage | None = None,
    ) -> None:
        self._journal.write(_finish_statements(run_id, status, output=output, error=error, usage=usage))

    async def resume(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        """Continue a run where it stopped; a finished run returns its recorded result without executing."""
        row = self._claim(run_id)
        if row.status == "completed":
            return await self._replay(row, deps)
        if row.status == "failed":
            raise error_from_record(json.loads(row.error or "{}"))
        if row.status == "cancelled":
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if row.status == "waiting":
            raise RunWaiting(run_id, [p.__dict__ for p in self._pending(run_id)])
        return await self._execute(run_id, deps)

    def resume_sync(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        _outside_event_loop("resume")
        return asyncio.run(self.resume(run_id, deps=deps))

    async def _replay(self, row: RunRow, deps: Any) -> AgentRunResult[OutputT]:
        """Rebuild a finished run's result (output, messages, usage) from its journal; nothing executes."""
        run = decode_input(row.run_id, row.input)
        model = self.agent.resolve_model(run.model_name)
        executor = _Executor(self, row.run_id, row.attempts, model, deps, run.prompt, self._journal.steps(row.run_id))

        async def replay_only(step: Step) -> StepResult:
            if step.key not in executor.recorded:
                raise NonDeterminismError(
                    run_id=row.run_id,
                    step_key=step.key,
                    recorded="no such step (the run is finished)",
                    requested=step.describe(),
                )
            return await executor.execute(step)

        return await drive(self.agent.new_loop(run, deps, model), replay_only)

    async def wait(self, run_id: str, *, deps: DepsT = None, timeout: float | None = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        """Wait until a run (executed by any process) finishes; its result. Raises its error if it failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            row = self._journal.get_run(run_id)
            if row is None:
                raise UserError(f"no run {run_id!r} in {self.journal_path}")
            if row.status in FINAL_STATUSES:
                return await self.resume(run_id, deps=deps)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id!r} is still {row.status} after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval)

    async def recover(self, *, deps: DepsT = None) -> list[str]:  # type: ignore[assignment]
        """Resume every orphaned run of this agent (its process died, or it was started and never picked up).

        Returns their ids once each has finished or is waiting for a decision.
        """
        ids = self._orphans()

        async def one(run_id: str) -> None:
            try:
                await self.resume(run_id, deps=deps)
            except (AgentRunError, RunWaiting, RunInProgress):
                pass  # recorded in the journal; recover() resumes, it does not judge

        await asyncio.gather(*(one(r) for r in ids))
        return ids

    def recover_sync(self, *, deps: DepsT = None) -> list[str]:  # type: ignore[assignment]
        _outside_event_loop("recover")
        return asyncio.run(self.recover(deps=deps))

    def _orphans(self) -> list[str]:
        rows = self._journal.list_runs(agent=self.name, statuses=("running", "pending"), limit=None)
        return [r.run_id for r in rows if r.status == "pending" or self._orphaned(r)]

    async def serve(
        self,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        concurrency: int = 8,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Be a worker: execute started, decided and orphaned runs of this agent until ``stop`` is set."""
        if concurrency < 1:
            raise UserError("concurrency must be at least 1")
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        stop = stop or asyncio.Event()

        async def one(run_id: str) -> None:
            try:
                await self.resume(run_id, deps=deps)
            except (AgentRunError, RunWaiting, RunInProgress, UserError):
                pass
            finally:
                slots.release()

        while not stop.is_set():
            for run_id in self._orphans():
                if (self._active_path, run_id) in _ACTIVE:
                    continue
                await slots.acquire()
                task = asyncio.create_task(one(run_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            except TimeoutError:
                pass
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- decisions and cancellation -----------------------------------------------------------------------

    async def approve(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        """Decide on a waiting call from any process; the run then continues (``resume`` or a worker)."""
        self.approve_sync(run_id, tool_call_id, approved=approved, note=note)

    def approve_sync(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        decide(self._journal, run_id, tool_call_id, approved=approved, note=note)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run from any process: it stops at its next step boundary (status ``cancelled``)."""
        self.cancel_sync(run_id)

    def cancel_sync(self, run_id: str) -> None:
        request_cancel(self._journal, run_id)

    # --- inspection -------------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """The run's status, steps (with timings and attempts), usage, error and pending decisions."""
        info = run_info(self._journal, run_id)
        if info is None:
            raise UserError(f"no run {run_id!r} in {self.journal_path}")
        return info

    def list_runs(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        """This agent's runs, newest first."""
        statuses = [status] if isinstance(status, str) else status
        return [
            run_info_from_row(self._journal, r, with_steps=False)
            for r in self._journal.list_runs(agent=self.name, statuses=statuses, limit=limit)
        ]

    def _pending(self, run_id: str) -> list[PendingDecision]:
        return pending_decisions(self._journal, run_id)


def _outside_event_loop(method: str) -> None:
    """The ``*_sync`` methods start an event loop: inside a running one they cannot (and say what to do instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UserError(f"{method}_sync() cannot be called from a running event loop; use `await durable.{method}(...)`")


async def _settle(executor: _Executor | None) -> None:
    """Make what a failing attempt recorded durable before its end is written (its errors are secondary)."""
    if executor is not None:
        try:
            await executor.barrier()
        except Exception:
            pass


def _finish_statements(
    run_id: str,
    status: str,
    *,
    output: str | None = None,
    error: dict[str, Any] | None = None,
    usage: Usage | None = None,
) -> list[tuple[str, Sequence[Any]]]:
    t = now()
    return [
        (
            "UPDATE perdure_runs SET status = ?, output = ?, error = ?, usage = ?, owner = NULL, "
            "lease_expires = NULL, updated_at = ?, finished_at = ? WHERE run_id = ? AND status = 'running'",
            (status, output, dumps(error) if error else None, dumps(usage.__dict__) if usage else None, t, t, run_id),
        )
    ]


# --- journal-level operations (shared with the CLI, which has no agent) ---------------------------------------


def pending_decisions(journal: Journal, run_id: str) -> list[PendingDecision]:
    out = []
    for s in journal.steps(run_id):
        if s.status == "waiting" and s.payload:
            p = json.loads(s.payload)
            out.append(
                PendingDecision(run_id, p["tool_call_id"], p["tool_name"], p["args"], p["reason"], s.key, s.started_at)
            )
    return out


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
    t = now()
    statements: list[tuple[str, Sequence[Any]]] = [
        (
            "UPDATE perdure_steps SET status = 'done', result = ?, finished_at = ? "
            "WHERE run_id = ? AND key = ? AND status = 'waiting'",
            (decision.model_dump_json(), t, run_id, match[0].key),
        ),
        # The run continues once none of its calls waits any more, judged inside this transaction: two people
        # deciding a run's two calls at the same moment must not each leave the flip to the other.
        (
            "UPDATE perdure_runs SET status = 'pending', updated_at = ? WHERE run_id = ? AND status = 'waiting' "
            "AND NOT EXISTS (SELECT 1 FROM perdure_steps WHERE run_id = ? AND status = 'waiting')",
            (t, run_id, run_id),
        ),
    ]
    if not journal.write_counts(statements)[0]:
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
    # A running run whose process is gone has nobody to stop it at a step boundary: like a pending one, it ends now
    # (unless its owner renewed the lease meanwhile: compare-and-swap on owner and lease).
    orphaned = row.status == "running" and (
        is_dead_local_owner(row.owner) or (row.lease_expires is not None and row.lease_expires < t)
    )
    counts = journal.write_counts(
        [
            # Nobody executes a pending or waiting run: it ends now. A running one stops at its next step boundary.
            (
                "UPDATE perdure_runs SET status = 'cancelled', cancel_requested = 1, error = ?, updated_at = ?, "
                "finished_at = ? WHERE run_id = ? AND status IN ('pending', 'waiting')",
                (error, t, t, run_id),
            ),
            (
                "UPDATE perdure_runs SET status = 'cancelled', cancel_requested = 1, error = ?, owner = NULL, "
                "lease_expires = NULL, updated_at = ?, finished_at = ? WHERE run_id = ? AND status = 'running' "
                "AND owner IS ? AND lease_expires IS ? AND ?",
                (error, t, t, run_id, row.owner, row.lease_expires, orphaned),
            ),
            (
                "UPDATE perdure_runs SET cancel_requested = 1, updated_at = ? WHERE run_id = ? AND status = 'running'",
                (t, run_id),
            ),
        ]
    )
    if counts[0] or counts[1]:
        _waits_ended(row, waits, "cancelled")
        _run_cancelled(row.agent)


def run_info(journal: Journal, run_id: str) -> RunInfo | None:
    row = journal.get_run(run_id)
    return None if row is None else run_info_from_row(journal, row, with_steps=True)


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
    pending = [
        PendingDecision(row.run_id, p["tool_call_id"], p["tool_name"], p["args"], p["reason"], s.key, s.started_at)
        for s in steps
        if s.status == "waiting" and s.payload and row.status not in FINAL_STATUSES  # a cancelled run waits for nobody
        for p in [json.loads(s.payload)]
    ]
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
                s.status,
                s.attempt,
                s.started_at,
                s.finished_at,
                s.input_tokens,
                s.output_tokens,
                s.describe,
            )
            for s in steps
        ],
        pending=pending,
        trace_context=json.loads(row.trace_context) if row.trace_context else None,
        cancel_requested=bool(row.cancel_requested),
    )


def _trace_context(agent: str, run_id: str) -> str | None:
    """The run's W3C trace context, recorded at acceptance so every attempt continues one trace."""
    from ..observability._spans import accept_trace_context

    carrier = accept_trace_context(agent_name=agent, run_id=run_id, engine=ENGINE)
    return dumps(carrier) if carrier else None


@contextmanager
def _observe_attempt(
    journal: Journal, agent: Agent[Any, Any], row: RunRow, prompt: str | None, model: Model, executor: _Executor
) -> Iterator[RunAttempt]:
    """The attempt's ``invoke_agent`` span, a child of the trace context recorded at acceptance."""
    from ..observability._spans import run_attempt

    with run_attempt(
        agent,
        run_id=row.run_id,
        engine=ENGINE,
        attempt=row.attempts,
        trace_context=row.trace_context,
        model=model.model_name,
        prompt=prompt,
        new_run=False,  # counted at acceptance
        suspend=(_Suspend,),
        count_replayed=lambda: len(executor.replayed),
    ) as obs:
        carrier = obs.trace_context if row.trace_context is None else None
        if carrier:
            # Accepted where no tracing was configured: this attempt starts the run's trace for the next ones.
            journal.write(
                [
                    (
                        "UPDATE perdure_runs SET trace_context = ? WHERE run_id = ? AND trace_context IS NULL",
                        (dumps(carrier), row.run_id),
                    )
                ]
            )
        yield obs


def _run_started(agent: str) -> None:
    from ..observability._spans import run_started

    run_started(agent_name=agent, engine=ENGINE)


def _run_cancelled(agent: str) -> None:
    from ..observability._spans import run_ended

    run_ended(agent_name=agent, engine=ENGINE, status="cancelled")


def _wait_started(agent: str) -> None:
    from ..observability._spans import approval_wait_started

    approval_wait_started(agent_name=agent, engine=ENGINE)


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
