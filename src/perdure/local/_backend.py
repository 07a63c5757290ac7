"""The embedded engine's side of the ports: ``LocalBackend`` (accept, resume, wait, recover), ``LocalStore``
(one attempt's steps as journal rows, group-committed and fenced) and the ``LeaseKeeper`` thread.

Fencing. Every claim of a run takes a new attempt number; every write of an attempt (a step, an at-most-once
mark, a suspension, the run's end) is conditional on the run still being owned by that owner and attempt, inside
the transaction that makes it. A process that stalled past its lease (SIGSTOP, a frozen VM, a long GC pause) and
then wakes up writes nothing: the row counts tell it, and it abandons the run at once without marking it failed.

Before a tool call acts, the attempt confirms its claim: its last renewal must be younger than half the lease by
the monotonic clock, or it renews right there (a fenced write) and stops if that changes nothing. So a stale owner
can start a side effect only if it stalls *between* that check and the call itself.

Leases are renewed from a thread, not the event loop: a tool that blocks the loop (a synchronous call inside an
``async def`` tool) does not let the lease lapse while the process is alive and working. A process that is
stopped as a whole (SIGSTOP) stops renewing, loses the run when its lease expires, and is fenced when it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import PerdureError, RunCancelled, RunInProgress, UserError, error_from_record
from .._loop import AgentRunResult, RunInput
from .._ops import Decision
from ..durable.base import gather_quietly, poll_until_final, waiting_error
from ..durable.codec import decode_input, encode_input, encode_output
from ..durable.owner import is_dead_local_owner, this_owner
from ..durable.ports import Body, ClaimLost, Done, Record, RunMeta, StepCall, Suspend, WaitCall
from ..durable.runner import AttemptEnd, StepRunner, run_attempt
from ..runs import FINAL_STATUSES
from ._admin import ENGINE, LocalAdmin
from ._info import pending_decisions
from ._journal import (
    Claim,
    Journal,
    RunRow,
    Statement,
    StepRow,
    claim_run,
    dumps,
    finish_run,
    insert_run,
    insert_step,
    now,
    release_run,
    renew_lease,
    set_trace_context,
    settle_step,
    suspend_run,
)

if TYPE_CHECKING:
    from .._agent import Agent

__all__ = ["LeaseKeeper", "LocalBackend", "LocalStore"]

log = logging.getLogger("perdure.local")

# Runs executing in this process, by (journal file, run id): never two executions at once.
_ACTIVE: dict[tuple[str, str], asyncio.Task[Any] | None] = {}


class LocalStore:
    """The steps of one attempt of one run, as rows of the journal."""

    def __init__(
        self,
        journal: Journal,
        claim: Claim,
        rows: Sequence[StepRow],
        *,
        agent_name: str,
        lease: float,
        keeper: LeaseKeeper,
    ) -> None:
        self.journal = journal
        self.agent_name = agent_name
        self.claim = claim
        self.lease = lease
        self.keeper = keeper
        self._recorded = {r.key: Record(r.key, r.kind, r.describe, r.status, r.result, r.attempt) for r in rows}  # type: ignore[arg-type]
        self._seq = max((r.seq for r in rows), default=0)
        self._seqs = {r.key: r.seq for r in rows}
        self._unsynced: list[asyncio.Future[list[int]]] = []
        self.loop = asyncio.get_running_loop()
        self.confirmed = time.monotonic()
        """When this claim was last confirmed (monotonic): claimed, renewed, or a fenced write committed."""
        self.cancelled = False
        self.lost: ClaimLost | None = None
        self.unwritable: UserError | None = None
        """Set when the journal refused a write (disk full, I/O error): the attempt stops, the run is not failed."""
        self.on_cancel: Callable[[], None] = lambda: None
        self.on_lost: Callable[[ClaimLost], None] = lambda e: None

    # --- the StepStore port ---------------------------------------------------------------------------------

    @property
    def recorded(self) -> dict[str, Record]:
        return self._recorded

    def cancel_requested(self) -> bool:
        if self.lost is not None:
            raise self.lost
        return self.cancelled

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        rec = self._recorded.get(call.key)
        if rec is not None and rec.status == "started":
            done = await (interrupted or body)()
            self._record([settle_step(self.claim, call.key, done.result, now())])
            await self.barrier()
            return self._done(call, done)
        if call.kind == "model":
            started = now()
            retried = rec is not None and rec.status == "failed"
            try:
                done = await body()
            except Exception as e:
                if not isinstance(e, ClaimLost | RunCancelled):
                    # The failed request is a step of the run too: `runs show` lists it, with its error.
                    error = (
                        e.to_record() if isinstance(e, PerdureError) else {"type": type(e).__name__, "message": str(e)}
                    )
                    self._record(
                        [
                            insert_step(
                                self.claim,
                                call.key,
                                self._next_seq(call.key),
                                call.kind,
                                call.describe,
                                "failed",
                                payload=dumps(error),
                                started_at=started,
                                finished_at=now(),
                                replace=retried,
                            )
                        ]
                    )
                raise
            # A model request has no side effects: its record need not be on disk before the loop moves on (see
            # ``barrier``); it shares the commit of whatever comes next.
            self._record(
                [
                    insert_step(
                        self.claim,
                        call.key,
                        self._next_seq(call.key),
                        call.kind,
                        call.describe,
                        "done",
                        result=done.result,
                        started_at=started,
                        finished_at=now(),
                        input_tokens=done.input_tokens,
                        output_tokens=done.output_tokens,
                        replace=retried,
                    )
                ]
            )
            return self._done(call, done)
        return (await self.step_batch([call], [body]))[0]

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        """Tool calls: at-most-once marks and what led here are durable (and the claim confirmed) before any
        acts; they run concurrently; every result is durable before the loop moves on."""
        started = now()
        marks = [
            insert_step(self.claim, c.key, self._next_seq(c.key), c.kind, c.describe, "started", started_at=started)
            for c in calls
            if c.at_most_once
        ]
        if marks:
            self._record(marks)
        await self.barrier()
        await self.confirm()
        outcomes = await asyncio.gather(*(b() for b in bodies), return_exceptions=True)
        statements: list[Statement] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                continue
            if call.at_most_once:
                statements.append(settle_step(self.claim, call.key, outcome.result, now()))
            else:
                statements.append(
                    insert_step(
                        self.claim,
                        call.key,
                        self._next_seq(call.key),
                        call.kind,
                        call.describe,
                        "done",
                        result=outcome.result,
                        started_at=started,
                        finished_at=now(),
                    )
                )
        if statements:
            self._record(statements)
        # A tool's result is durable before the loop moves on: a crash from here on never runs it again.
        await self.barrier()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [self._done(c, o) for c, o in zip(calls, outcomes, strict=True) if isinstance(o, Done)]

    async def wait(self, calls: Sequence[WaitCall]) -> dict[str, Decision]:
        from ..observability._spans import approval_wait_started

        for w in calls:
            payload = dumps(
                {"tool_name": w.tool_name, "args": w.args, "tool_call_id": w.tool_call_id, "reason": w.reason}
            )
            self._record(
                [
                    insert_step(
                        self.claim,
                        w.key,
                        self._next_seq(w.key),
                        "wait",
                        w.describe,
                        "waiting",
                        payload=payload,
                        started_at=now(),
                    )
                ]
            )
            approval_wait_started(agent_name=self.agent_name, engine=ENGINE)
        await self.barrier()
        raise Suspend([w.key for w in calls])

    # --- group commit and fencing -------------------------------------------------------------------------

    def _record(self, statements: list[Statement]) -> None:
        """Queue a write for the next group commit without waiting for it (see ``barrier``)."""
        self._unsynced.append(self.journal.queue(statements))

    async def barrier(self) -> None:
        """Wait until everything this attempt recorded is durable, and check it was still this attempt's to write.

        A step's result need not be on disk before the loop moves on to a model request (a model request has no
        side effects: if a crash loses its record, it is simply asked again). It must be on disk before anything
        that acts on it: a tool call, a suspension, the run's end. So writes are queued, and this barrier stands
        before each of those — with an instant model, a tool's result and the next model answer share one commit.
        """
        if not self._unsynced:
            return
        pending, self._unsynced = self._unsynced, []
        if self.keeper.solo():
            # The only run in this process: nobody to share a commit with, so don't wait a loop turn for one.
            self.journal.flush_now()
        fenced = False
        for future in pending:
            try:
                if not future.done():
                    await future
                counts = future.result()
            except sqlite3.OperationalError as e:
                if not _unwritable(e):
                    raise
                raise self.refused(e) from e
            if 0 in counts:
                fenced = True
        if fenced:
            raise self._lose()
        self.confirmed = time.monotonic()

    async def settle(self) -> None:
        """Make what a failing attempt recorded durable before its end is written (its errors are secondary)."""
        try:
            await self.barrier()
        except ClaimLost:
            raise
        except Exception:
            pass

    async def confirm(self) -> None:
        """Before a tool acts: the claim must be recent by the monotonic clock, or renewed now (fenced)."""
        if self.lost is not None:
            raise self.lost
        if time.monotonic() - self.confirmed < self.lease / 2:
            return
        try:
            renewed = self.journal.write_counts([renew_lease(self.claim, now() + self.lease)])[0]
        except sqlite3.OperationalError as e:
            if not _unwritable(e):
                raise
            raise self.refused(e) from e
        if not renewed:
            raise self._lose()
        self.confirmed = time.monotonic()

    def refused(self, error: sqlite3.OperationalError) -> UserError:
        """The journal refused a write of this attempt (see ``_unwritable``): a disk that is full or failing stops
        the run with a clear error, never marking it failed (that write would be refused too, and the run did
        nothing wrong)."""
        if self.unwritable is None:
            self.unwritable = _refused(self.journal, self.claim.run_id, error)
        return self.unwritable

    def _lose(self) -> ClaimLost:
        if self.lost is None:
            row = self.journal.get_run(self.claim.run_id)
            owner = row.owner if row is not None else None
            self.lost = ClaimLost(self.claim.run_id, owner)
            if row is None:
                now_where = "the run was deleted meanwhile"
            elif owner:
                now_where = f"{owner} took the run over (attempt {row.attempts}) while it stalled"
            else:
                now_where = (
                    f"attempt {row.attempts} of another process took the run over while it stalled; "
                    f"the run is {row.status} now"
                )
            log.warning(
                "run %r: this process (%s, attempt %d) lost its claim: %s; it stops executing the run and writes "
                "nothing more",
                self.claim.run_id,
                self.claim.owner,
                self.claim.attempt,
                now_where,
            )
        return self.lost

    def lose_from_keeper(self) -> None:
        """The lease keeper found the claim gone: stop everything in flight."""
        self.on_lost(self._lose())

    def _next_seq(self, key: str) -> int:
        seq = self._seqs.get(key)
        if seq is None:
            self._seq += 1
            seq = self._seqs[key] = self._seq
        return seq

    def _done(self, call: StepCall, done: Done) -> Record:
        return Record(call.key, call.kind, call.describe, "done", done.result, call.attempt, done.value)

    def record_end(self, statement: Statement) -> None:
        self._record([statement])


class LeaseKeeper:
    """One thread per journal in a process: renews the leases of the runs it executes and notices cancellations
    requested by other processes, whatever the event loops are doing."""

    def __init__(self, journal: Journal) -> None:
        self._journal = weakref.ref(journal)  # the journal's cache entry holds the keeper, not the other way round
        self._stores: dict[str, LocalStore] = {}
        self._polls: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def solo(self) -> bool:
        return len(self._stores) <= 1

    def add(self, store: LocalStore, poll: float) -> None:
        with self._lock:
            self._stores[store.claim.run_id] = store
            self._polls[store.claim.run_id] = poll
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="perdure-lease-keeper", daemon=True)
                self._thread.start()

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._stores.pop(run_id, None)
            self._polls.pop(run_id, None)

    def _run(self) -> None:
        last_renew = time.monotonic()
        idle_since: float | None = None
        poll = 0.05
        while True:
            self._wake.wait(poll)
            with self._lock:
                if not self._stores:
                    # Idle: linger a little, so that a process running runs one after another does not pay for
                    # a new thread (and its first tick) per run.
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 2.0:
                        self._thread = None
                        return
                    continue
                idle_since = None
                # Held only for this tick: a finished run's store (and its journal) must not outlive it here.
                stores = list(self._stores.values())
                poll = min(self._polls.values())
            try:
                if self._tick(stores, last_renew):
                    last_renew = time.monotonic()
            except sqlite3.Error:
                pass  # a busy or full disk: the next tick tries again; the lease has slack for it
            del stores

    def _tick(self, stores: list[LocalStore], last_renew: float) -> bool:
        """Deliver cancellations; renew the leases when a third of the shortest is gone. True if renewed."""
        live = [s for s in stores if s.lost is None]
        journal = self._journal()
        if not live or journal is None:
            return False
        for run_id in journal.cancel_requested_among([s.claim.run_id for s in live]):
            for s in live:
                if s.claim.run_id == run_id and not s.cancelled:
                    _call_soon(s, s.on_cancel)
        if time.monotonic() - last_renew > min(s.lease for s in live) / 3:
            t = now()
            counts = journal.write_counts([renew_lease(s.claim, t + s.lease) for s in live])
            confirmed = time.monotonic()
            for s, count in zip(live, counts, strict=True):
                if count:
                    s.confirmed = confirmed
                else:
                    _call_soon(s, s.lose_from_keeper)
            return True
        return False


def _unwritable(error: sqlite3.OperationalError) -> bool:
    """A write refused for want of space or by a failing disk (not a busy lock, not a damaged file)."""
    name = getattr(error, "sqlite_errorname", "")
    return name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR") or "disk is full" in str(error)


def _refused(journal: Journal, run_id: str, error: sqlite3.OperationalError) -> UserError:
    return UserError(
        f"run {run_id!r} stopped: the journal {journal.path} refused to record its next step ({error}). Nothing "
        "recorded before is lost and the run is not marked failed; it is left for any process to resume. Free "
        f"space on the journal's disk (or fix the disk), then resume it — `perdure runs resume {run_id}`, "
        "DurableAgent.resume() or a worker: recorded steps replay, the step that was not recorded runs again"
    )


def _call_soon(store: LocalStore, fn: Callable[[], None]) -> None:
    try:
        store.loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass  # that event loop is closed: its run is over


class LocalBackend:
    """Runs of one agent on one journal."""

    engine = ENGINE

    def __init__(
        self,
        agent: Agent[Any, Any],
        name: str,
        journal: Journal,
        *,
        lease_seconds: float,
        poll_interval: float,
        fingerprint: Callable[[], str],
    ) -> None:
        self.agent = agent
        self.name = name
        self.journal = journal
        self.admin = LocalAdmin(journal)
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.fingerprint = fingerprint
        self._active_path = os.path.realpath(journal.path)
        self.keeper = _keeper(journal)

    # --- accepting ------------------------------------------------------------------------------------------

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        """Commit the run row (accepted = durable). False if the run id already exists.

        The commit is shared with concurrent acceptances and steps in this process (group commit); the run is
        durable before this returns, so before its first step.
        """
        if self.journal.get_run(run.run_id) is not None:
            return self._existing(run.run_id)
        t = now()
        status = "running" if start else "pending"
        owner, lease = (this_owner(), t + self.lease_seconds) if start else (None, None)
        trace_context = meta.trace_context(run.run_id, ENGINE)
        carrier = dumps(trace_context) if trace_context else None
        statement = insert_run(
            run.run_id, meta.agent, meta.fingerprint, status, encode_input(run), owner, lease, carrier, t
        )
        try:
            await self.journal.queue([statement])
        except sqlite3.IntegrityError:
            return self._existing(run.run_id)  # another process accepted the same run id first
        from ..observability._spans import run_started

        run_started(agent_name=self.name, engine=ENGINE)
        return True

    def _existing(self, run_id: str) -> bool:
        row = self.journal.get_run(run_id)
        if row is not None and row.agent != self.name:
            raise UserError(f"run {run_id!r} belongs to agent {row.agent!r}, not {self.name!r}")
        return False

    # --- executing --------------------------------------------------------------------------------------------

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        row = self._get(run_id) if fresh else self._claim(run_id)
        if row.status == "completed":
            return await self._replay(row, deps)
        if row.status == "failed":
            raise error_from_record(json.loads(row.error or "{}"))
        if row.status == "cancelled":
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if row.status == "waiting":
            raise waiting_error(run_id, pending_decisions(self.journal, run_id))
        return await self._execute(row, deps, fresh=fresh)

    def _get(self, run_id: str) -> RunRow:
        row = self.journal.get_run(run_id)
        if row is None:
            raise UserError(f"no run {run_id!r} in {self.journal.path}")
        if row.agent != self.name:
            raise UserError(f"run {run_id!r} belongs to agent {row.agent!r}, not {self.name!r}")
        return row

    def _claim(self, run_id: str) -> RunRow:
        """Take ownership of a run that no live process is executing; returns the row (maybe final)."""
        row = self._get(run_id)
        if row.status in FINAL_STATUSES or row.status == "waiting":
            return row
        if (self._active_path, run_id) in _ACTIVE:
            raise RunInProgress(run_id, row.owner)
        if row.status == "running" and row.owner and not self.orphaned(row):
            raise RunInProgress(run_id, row.owner)
        t = now()
        try:
            counts = self.journal.write_counts(
                [claim_run(run_id, row.status, row.owner, this_owner(), t + self.lease_seconds, t)]
            )
        except sqlite3.OperationalError as e:
            if _unwritable(e):
                raise _refused(self.journal, run_id, e) from e
            raise
        if counts[0] == 0:
            raise RunInProgress(run_id)
        claimed = self.journal.get_run(run_id)
        assert claimed is not None
        return claimed

    @staticmethod
    def orphaned(row: RunRow) -> bool:
        if row.owner == this_owner():
            return True  # this process, but not executing it: a crashed attempt in this very process
        if is_dead_local_owner(row.owner):
            return True
        return row.lease_expires is not None and row.lease_expires < now()

    def orphans(self) -> list[str]:
        return [r.run_id for r in self._orphan_rows()]

    def _orphan_rows(self) -> list[RunRow]:
        rows = self.journal.list_runs(agent=self.name, statuses=("running", "pending"), limit=None)
        return [r for r in rows if r.status == "pending" or self.orphaned(r)]

    def executing(self, run_id: str) -> bool:
        return (self._active_path, run_id) in _ACTIVE

    async def _execute(self, row: RunRow, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        from ..observability._spans import run_attempt as observed_attempt

        run_id = row.run_id
        key = (self._active_path, run_id)
        if key in _ACTIVE:
            raise RunInProgress(run_id, row.owner)
        assert row.owner is not None
        _ACTIVE[key] = asyncio.current_task()
        try:
            run = decode_input(run_id, row.input)
            model = self.agent.resolve_model(run.model_name)
            claim = Claim(run_id, row.owner, row.attempts)
            store = LocalStore(
                self.journal,
                claim,
                [] if fresh else self.journal.steps(run_id),
                agent_name=self.name,
                lease=self.lease_seconds,
                keeper=self.keeper,
            )
            runner = StepRunner(
                self.agent, store, run_id=run_id, attempt=row.attempts, model=model, deps=deps, prompt=run.prompt
            )
            store.cancelled = bool(row.cancel_requested)

            def cancel() -> None:
                store.cancelled = True
                runner.cancel()

            store.on_cancel = cancel
            store.on_lost = runner.abandon
            self.keeper.add(store, self.poll_interval)
            try:
                with observed_attempt(
                    self.agent,
                    run_id=run_id,
                    engine=ENGINE,
                    attempt=row.attempts,
                    trace_context=row.trace_context,
                    model=model.model_name,
                    prompt=run.prompt,
                    new_run=False,  # counted at acceptance
                    count_replayed=lambda: len(runner.replayed),
                ) as obs:
                    carrier = obs.trace_context if row.trace_context is None else None
                    if carrier:
                        # Accepted where no tracing was configured: this attempt starts the run's trace.
                        self.journal.write([set_trace_context(run_id, dumps(carrier))])
                    end = await run_attempt(self.agent, run, runner)
                    result = await self._persist(end, store)
                    obs.set_result(result)
                    return result
            finally:
                self.keeper.remove(run_id)
        finally:
            _ACTIVE.pop(key, None)

    async def _persist(self, end: AttemptEnd, store: LocalStore) -> AgentRunResult[Any]:
        """Record how the attempt ended (fenced), then return its result or raise its error."""
        claim = store.claim
        if store.unwritable is not None and end.error is store.unwritable:
            # Hand the run back if the journal takes that write (space may be back already); else this process
            # simply stops: it is not executing the run any more, so any process may resume it.
            with contextlib.suppress(sqlite3.Error):
                self.journal.write([release_run(claim, now())])
            raise end.error
        try:
            if end.status == "completed":
                assert end.result is not None
                output = encode_output(end.result.output)
                usage = dumps(end.result.usage().__dict__)
                # The run's end shares one commit with its last steps.
                store.record_end(finish_run(claim, "completed", output=output, usage=usage, at=now()))
                await store.barrier()
                return end.result
            if end.status == "waiting":
                await store.barrier()
                self._write_fenced(store, suspend_run(claim, now()))
                raise waiting_error(claim.run_id, pending_decisions(self.journal, claim.run_id))
            if end.status in ("cancelled", "failed"):
                await store.settle()
                self._write_fenced(store, finish_run(claim, end.status, error=dumps(end.record), at=now()))
            elif end.status == "released":
                # The caller's task was cancelled, not the run: leave it for any process to resume.
                self.journal.write([release_run(claim, now())])
        except ClaimLost as lost:
            raise lost from None
        assert end.error is not None
        raise end.error

    def _write_fenced(self, store: LocalStore, statement: Statement) -> None:
        try:
            written = self.journal.write_counts([statement])[0]
        except sqlite3.OperationalError as e:
            if not _unwritable(e):
                raise
            raise store.refused(e) from e
        if not written:
            raise store._lose()

    async def _replay(self, row: RunRow, deps: Any) -> AgentRunResult[Any]:
        """Rebuild a finished run's result (output, messages, usage) from its journal; nothing executes."""
        run = decode_input(row.run_id, row.input)
        model = self.agent.resolve_model(run.model_name)
        store = _ReplayStore(self.journal.steps(row.run_id))
        runner = StepRunner(
            self.agent,
            store,
            run_id=row.run_id,
            attempt=row.attempts,
            model=model,
            deps=deps,
            prompt=run.prompt,
            replay_only=True,
        )
        end = await run_attempt(self.agent, run, runner)
        return end.raise_or_return()

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        await poll_until_final(self.admin.get_run, run_id, timeout, self.poll_interval, str(self.journal.path))
        return await self.resume(run_id, deps, fresh=False)

    async def recover(self, deps: Any) -> list[str]:
        rows = self._orphan_rows()
        # Every orphan is claimed in one commit, then executed: the first resumed step does not wait for one
        # fsync per orphan. A run another process claimed first is left to it (its claim's count is 0).
        t = now()
        candidates = [r for r in rows if not self.executing(r.run_id)]
        statements = [
            claim_run(r.run_id, r.status, r.owner, this_owner(), t + self.lease_seconds, t) for r in candidates
        ]
        counts = self.journal.write_counts(statements) if statements else []
        claimed = [r.run_id for r, count in zip(candidates, counts, strict=True) if count]

        async def execute(run_id: str) -> AgentRunResult[Any]:
            row = self.journal.get_run(run_id)
            assert row is not None
            return await self._execute(row, deps, fresh=False)

        await gather_quietly(claimed, execute)
        return [r.run_id for r in rows]


class _ReplayStore:
    """The steps of a finished run: everything replays, nothing executes."""

    def __init__(self, rows: Sequence[StepRow]) -> None:
        self._recorded = {r.key: Record(r.key, r.kind, r.describe, r.status, r.result, r.attempt) for r in rows}  # type: ignore[arg-type]

    @property
    def recorded(self) -> dict[str, Record]:
        return self._recorded

    def cancel_requested(self) -> bool:
        return False

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        raise UserError(f"step {call.key!r} of a finished run was not recorded")  # pragma: no cover

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        raise UserError("a finished run executes nothing")  # pragma: no cover

    async def wait(self, calls: Sequence[WaitCall]) -> dict[str, Decision]:
        raise UserError("a finished run waits for nothing")  # pragma: no cover


_KEEPERS: weakref.WeakKeyDictionary[Journal, LeaseKeeper] = weakref.WeakKeyDictionary()


def _keeper(journal: Journal) -> LeaseKeeper:
    keeper = _KEEPERS.get(journal)
    if keeper is None:
        keeper = _KEEPERS[journal] = LeaseKeeper(journal)
    return keeper
