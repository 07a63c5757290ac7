"""An engine in one file: ``MemoryAgent`` keeps its runs in a dict, and is the proof that the ports are all an
engine needs. The conformance suite runs on it as its fifth engine.

It is a reference, not a product: runs live in this process's memory, or — with ``path`` — in one JSON file that
every operation reads and rewrites under a file lock, which is enough for the conformance suite's processes to
crash, resume and decide across each other, and far too slow for anything else. Use ``DurableAgent`` for real work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from .._agent import Agent
from .._exceptions import RunCancelled, RunInProgress, UserError, error_from_record
from .._loop import AgentRunResult, RunInput
from .._ops import Decision, step_kind
from ..runs import FINAL_STATUSES, PendingDecision, RunInfo, StepInfo
from ..usage import Usage
from .base import DurableAgentBase, check_name, gather_quietly, poll_until_final, waiting_error
from .codec import encode_output, input_from_dict, input_to_dict
from .owner import is_dead_local_owner, this_owner
from .ports import Body, ClaimLost, Done, Record, RunMeta, StepCall, Suspend, WaitCall
from .runner import StepRunner, run_attempt

__all__ = ["MemoryAgent", "MemoryRuns"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

ENGINE = "memory"

State = dict[str, Any]


class MemoryRuns:
    """Where a ``MemoryAgent`` keeps runs: a dict, optionally mirrored to a JSON file shared by processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._state: State = {"runs": {}, "steps": {}}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def txn(self) -> Iterator[State]:
        """The state, exclusively; written back when the block ends without an error."""
        with self._lock:
            if self.path is None:
                yield self._state
                return
            with open(f"{self.path}.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    state = self._load()
                    yield state
                    tmp = f"{self.path}.tmp"
                    with open(tmp, "w") as f:
                        json.dump(state, f)
                    os.replace(tmp, self.path)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> State:
        with self._lock:
            return self._state if self.path is None else self._load()

    def _load(self) -> State:
        assert self.path is not None
        try:
            with open(self.path) as f:
                state: State = json.load(f)
                return state
        except FileNotFoundError:
            return {"runs": {}, "steps": {}}


def _fenced(state: State, run_id: str, owner: str, attempt: int) -> dict[str, Any] | None:
    run: dict[str, Any] | None = state["runs"].get(run_id)
    if run is None or run["status"] != "running" or run["owner"] != owner or run["attempts"] != attempt:
        return None
    return run


class MemoryStore:
    """One attempt's steps in a ``MemoryRuns``; every write fenced on (owner, attempt)."""

    def __init__(self, runs: MemoryRuns, run_id: str, owner: str, attempt: int) -> None:
        self.runs = runs
        self.run_id = run_id
        self.owner = owner
        self.attempt = attempt
        steps = runs.read()["steps"].get(run_id, {})
        self._recorded = {
            k: Record(k, s["kind"], s["describe"], s["status"], s.get("result"), s["attempt"]) for k, s in steps.items()
        }

    @property
    def recorded(self) -> dict[str, Record]:
        return self._recorded

    def cancel_requested(self) -> bool:
        run = self.runs.read()["runs"].get(self.run_id)
        if run is None or run["owner"] != self.owner or run["attempts"] != self.attempt:
            raise ClaimLost(self.run_id, None if run is None else run["owner"])
        return bool(run["cancel_requested"])

    def _write(self, key: str, row: dict[str, Any]) -> None:
        with self.runs.txn() as state:
            run = _fenced(state, self.run_id, self.owner, self.attempt)
            if run is None:
                raise ClaimLost(self.run_id, (state["runs"].get(self.run_id) or {}).get("owner"))
            state["steps"].setdefault(self.run_id, {})[key] = row
            run["updated_at"] = time.time()

    def _row(self, call: StepCall | WaitCall, status: str, kind: str, **extra: Any) -> dict[str, Any]:
        row = {"kind": kind, "describe": call.describe, "status": status, "attempt": self.attempt}
        return {**row, "started_at": time.time(), "finished_at": None, "input_tokens": 0, "output_tokens": 0, **extra}

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        rec = self._recorded.get(call.key)
        if rec is not None and rec.status == "started":
            return self._done(call, await (interrupted or body)())
        if call.at_most_once:
            self._write(call.key, self._row(call, "started", call.kind))
        return self._done(call, await body())

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        for call in sorted(calls, key=lambda c: c.key):
            if call.at_most_once:
                self._write(call.key, self._row(call, "started", call.kind))
        import asyncio

        outcomes = await asyncio.gather(*(b() for b in bodies), return_exceptions=True)
        records = [self._done(c, o) for c, o in zip(calls, outcomes, strict=True) if isinstance(o, Done)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return records

    def _done(self, call: StepCall, done: Done) -> Record:
        row = self._row(call, "done", call.kind, result=done.result, finished_at=time.time())
        row.update(input_tokens=done.input_tokens, output_tokens=done.output_tokens)
        self._write(call.key, row)
        return Record(call.key, call.kind, call.describe, "done", done.result, self.attempt, done.value)

    async def wait(self, calls: Sequence[WaitCall]) -> dict[str, Decision]:
        for w in calls:
            payload = {"tool_name": w.tool_name, "args": w.args, "tool_call_id": w.tool_call_id, "reason": w.reason}
            self._write(w.key, self._row(w, "waiting", "wait", payload=payload))
        raise Suspend([w.key for w in calls])


class MemoryAdmin:
    engine = ENGINE

    def __init__(self, runs: MemoryRuns) -> None:
        self.runs = runs

    async def get_run(self, run_id: str) -> RunInfo | None:
        state = self.runs.read()
        run = state["runs"].get(run_id)
        return None if run is None else _info(run_id, run, state["steps"].get(run_id, {}), with_steps=True)

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]:
        state = self.runs.read()
        rows = [
            _info(run_id, run, {}, with_steps=False)
            for run_id, run in state["runs"].items()
            if (agent is None or run["agent"] == agent) and (not status or run["status"] in status)
        ]
        rows.sort(key=lambda r: r.created_at, reverse=True)
        return rows if limit is None else rows[:limit]

    async def stuck(self, older_than: float) -> list[RunInfo]:
        now = time.time()
        return [
            r
            for r in await self.list_runs(status=["running", "pending"], limit=None)
            if (r.status == "running" and is_dead_local_owner(r.owner)) or now - r.updated_at >= older_than
        ]

    async def pending(self, run_id: str) -> list[PendingDecision]:
        info = await self.get_run(run_id)
        return [] if info is None else info.pending

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None:
        with self.runs.txn() as state:
            run = state["runs"].get(run_id)
            if run is None:
                raise UserError(f"no run {run_id!r} in this MemoryRuns")
            if run["status"] in FINAL_STATUSES:
                raise UserError(f"run {run_id!r} is {run['status']}: there is nothing left to decide")
            steps = state["steps"].get(run_id, {})
            match = [
                k for k, s in steps.items() if s["status"] == "waiting" and s["payload"]["tool_call_id"] == tool_call_id
            ]
            if not match:
                raise UserError(f"run {run_id!r} has no call {tool_call_id!r} waiting for a decision")
            steps[match[0]].update(
                status="done", result=Decision(approved=approved, note=note).model_dump_json(), finished_at=time.time()
            )
            if run["status"] == "waiting" and not any(s["status"] == "waiting" for s in steps.values()):
                run["status"] = "pending"

    async def cancel(self, run_id: str) -> None:
        with self.runs.txn() as state:
            run = state["runs"].get(run_id)
            if run is None:
                raise UserError(f"no run {run_id!r} in this MemoryRuns")
            if run["status"] in FINAL_STATUSES:
                return
            run["cancel_requested"] = True
            if run["status"] in ("pending", "waiting") or is_dead_local_owner(run["owner"]):
                run.update(status="cancelled", owner=None, finished_at=time.time())
                run["error"] = RunCancelled(f"run {run_id!r} was cancelled").to_record()

    async def prune(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        with self.runs.txn() as state:
            gone = [r for r, run in state["runs"].items() if run.get("finished_at") and run["finished_at"] < cutoff]
            for run_id in gone:
                state["runs"].pop(run_id)
                state["steps"].pop(run_id, None)
        return len(gone)


def _info(run_id: str, run: dict[str, Any], steps: dict[str, Any], *, with_steps: bool) -> RunInfo:
    final = run["status"] in FINAL_STATUSES
    return RunInfo(
        run_id=run_id,
        agent=run["agent"],
        status=run["status"],
        prompt=run["input"].get("prompt"),
        attempts=run["attempts"],
        created_at=run["created_at"],
        updated_at=run["updated_at"],
        finished_at=run.get("finished_at"),
        owner=run.get("owner"),
        lease_expires=None,
        fingerprint=run["fingerprint"],
        usage=Usage(**(run.get("usage") or {})) if run.get("usage") or not with_steps else _usage(steps),
        output=run.get("output"),
        error=run.get("error"),
        steps=[
            StepInfo(
                k,
                step_kind(k),
                s["status"],
                s["attempt"],
                s["started_at"],
                s["finished_at"],
                s["input_tokens"],
                s["output_tokens"],
                s["describe"],
            )
            for k, s in steps.items()
        ],
        pending=[
            PendingDecision(run_id, p["tool_call_id"], p["tool_name"], p["args"], p["reason"], k, s["started_at"])
            for k, s in steps.items()
            if s["status"] == "waiting" and not final
            for p in [s["payload"]]
        ],
    )


def _usage(steps: dict[str, Any]) -> Usage:
    return Usage(
        requests=sum(1 for s in steps.values() if s["kind"] == "model"),
        input_tokens=sum(s["input_tokens"] for s in steps.values()),
        output_tokens=sum(s["output_tokens"] for s in steps.values()),
        tool_calls=sum(1 for s in steps.values() if s["kind"] == "tool"),
    )


class MemoryBackend:
    engine = ENGINE

    def __init__(self, agent: Agent[Any, Any], name: str, runs: MemoryRuns) -> None:
        self.agent = agent
        self.name = name
        self.runs = runs
        self._admin = MemoryAdmin(runs)
        self._active: set[str] = set()

    @property
    def admin(self) -> MemoryAdmin:
        return self._admin

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        with self.runs.txn() as state:
            existing = state["runs"].get(run.run_id)
            if existing is not None:
                if existing["agent"] != self.name:
                    raise UserError(f"run {run.run_id!r} belongs to agent {existing['agent']!r}, not {self.name!r}")
                return False
            t = time.time()
            state["runs"][run.run_id] = {
                "agent": meta.agent,
                "fingerprint": meta.fingerprint,
                "status": "pending",
                "input": input_to_dict(run),
                "owner": None,
                "attempts": 0,
                "cancel_requested": False,
                "created_at": t,
                "updated_at": t,
                "trace_context": meta.trace_context(run.run_id, ENGINE),
            }
        return True

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        with self.runs.txn() as state:
            run = state["runs"].get(run_id)
            if run is None:
                raise UserError(f"no run {run_id!r} in this MemoryRuns")
            status = run["status"]
            if status == "running":
                owner = run["owner"]
                if run_id in self._active or not (owner == this_owner() or is_dead_local_owner(owner)):
                    raise RunInProgress(run_id, owner)
            if status in ("pending", "running"):
                run.update(status="running", owner=this_owner(), attempts=run["attempts"] + 1, updated_at=time.time())
            snapshot = dict(run)
        if status == "completed":
            return await self._attempt(run_id, snapshot, deps, replay_only=True)
        if status in ("failed", "cancelled"):
            raise error_from_record(snapshot.get("error") or {})
        if status == "waiting":
            info = await self._admin.get_run(run_id)
            raise waiting_error(run_id, info.pending if info else [])
        self._active.add(run_id)
        try:
            return await self._attempt(run_id, snapshot, deps, replay_only=False)
        finally:
            self._active.discard(run_id)

    async def _attempt(self, run_id: str, run: dict[str, Any], deps: Any, *, replay_only: bool) -> AgentRunResult[Any]:
        inp = input_from_dict(run_id, run["input"])
        model = self.agent.resolve_model(inp.model_name)
        store = MemoryStore(self.runs, run_id, run["owner"], run["attempts"])
        runner = StepRunner(
            self.agent,
            store,
            run_id=run_id,
            attempt=run["attempts"],
            model=model,
            deps=deps,
            prompt=inp.prompt,
            replay_only=replay_only,
        )
        end = await run_attempt(self.agent, inp, runner)
        if replay_only or end.status in ("lost", "released"):
            return end.raise_or_return()
        with self.runs.txn() as state:
            current = _fenced(state, run_id, run["owner"], run["attempts"])
            if current is None:
                raise ClaimLost(run_id, (state["runs"].get(run_id) or {}).get("owner"))
            t = time.time()
            if end.status == "completed":
                assert end.result is not None
                current.update(status="completed", output=json.loads(encode_output(end.result.output)))
                current["usage"] = dict(end.result.usage().__dict__)
            elif end.status == "waiting":
                steps = state["steps"].get(run_id, {})
                current["status"] = "waiting" if any(s["status"] == "waiting" for s in steps.values()) else "pending"
            else:
                current.update(status=end.status, error=end.record)
            current.update(owner=None, updated_at=t, finished_at=t if current["status"] in FINAL_STATUSES else None)
        if end.status == "waiting":
            info = await self._admin.get_run(run_id)
            raise waiting_error(run_id, info.pending if info else [])
        return end.raise_or_return()

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        await poll_until_final(self._admin.get_run, run_id, timeout, 0.05, "this MemoryRuns")
        return await self.resume(run_id, deps, fresh=False)

    async def recover(self, deps: Any) -> list[str]:
        state = self.runs.read()
        ids = [
            run_id
            for run_id, run in state["runs"].items()
            if run["agent"] == self.name
            and (run["status"] == "pending" or (run["status"] == "running" and is_dead_local_owner(run["owner"])))
        ]
        await gather_quietly(ids, lambda run_id: self.resume(run_id, deps, fresh=False))
        return ids


class MemoryAgent(DurableAgentBase[DepsT, OutputT]):
    """Durable runs of ``agent`` kept in memory (or in one JSON file with ``runs=MemoryRuns(path)``).

    The reference implementation of the engine ports, for tests: ``MemoryAgent(agent).run_sync("hi")`` behaves
    like ``DurableAgent`` in everything but survival (a process's memory dies with it).
    """

    def __init__(self, agent: Agent[DepsT, OutputT], *, runs: MemoryRuns | None = None) -> None:
        self.name = check_name(agent, None, "MemoryAgent", "runs are matched to their agent by it")
        self.agent = agent
        self.runs = runs if runs is not None else MemoryRuns()
        self._backend: MemoryBackend = MemoryBackend(agent, self.name, self.runs)

    def __repr__(self) -> str:
        return f"MemoryAgent({self.name!r})"
