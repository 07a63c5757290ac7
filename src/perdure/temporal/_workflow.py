"""Workflow side: the agent loop as deterministic workflow code, driven by the shared ``StepRunner``.

``AgentRunInWorkflow`` is the ``StepStore`` of one agent run inside any workflow (the built-in one, or the user's
own ``@workflow.defn``): a model request or a tool call is an activity (the store ships the step to it instead of
calling the body: Temporal's history is the record, and replays it), a wait is a wait for the ``perdure.approve``
update. ``Runs`` holds the agent runs of one workflow execution and answers the queries and the update.
``make_workflow_class`` builds the built-in workflow of an agent: workflow id = run id, continue-as-new when
Temporal suggests it, carrying every step result so that the new run replays the loop to where it stopped (the
carried journal is the store's ``recorded``: the runner replays and checks it as on every engine).

Everything here runs in the workflow sandbox with ``perdure`` passed through: no I/O, no clock, no randomness.
The commands each step issues, and their order, are what the committed histories in tests/temporal replay: an
activity per step in the order the loop lists the steps (a batch's activities are scheduled one coroutine per
step, as before the shared runner existed), a memo upsert when a wait starts and when it ends.

Telemetry (``perdure.observability``) is the exception that decides nothing: it reports only what runs live, never
during a replay (``workflow.unsafe.is_replaying()``). On Temporal a run **attempt** is one worker's live stretch of
the run's workflow code: from the first step it schedules live (a new workflow, or a worker that picked the run up
after replaying its history: the previous worker died, or evicted it from its cache) to the run's end, a wait for a
human, a continue-as-new, or the workflow leaving the worker (``interrupted``). Each attempt is an ``invoke_agent``
span, a child of the trace context recorded when the run was accepted (carried in the workflow input). Activities
get the attempt's number and span with their input, so the ``chat``/``execute_tool`` span of a step is a child of
the attempt that scheduled it, wherever it executes; an activity Temporal runs again (its worker died, or a
transient error) keeps that attempt and says its own try in ``perdure.retry.attempt``. Results echo the attempt
number, so a worker replaying the history learns how many attempts came before its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TemporalError, TimeoutError

from .._exceptions import AgentRunError, PerdureError, RunCancelled, error_from_record
from .._loop import AgentRunResult, RunInput
from .._ops import Decision, ModelStep, Step, ToolStep
from .._tools import ToolOutcome
from ..durable.ports import Body, Record, StepCall, WaitCall
from ..durable.runner import StepRunner, run_attempt
from ..messages import ModelMessage, ModelResponse
from ..models import Model, ModelRequestParameters, ModelSettings
from ..observability._spans import (
    RunAttempt,
    RunStatus,
    approval_wait_ended,
    approval_wait_started,
    current_trace_context,
    start_attempt,
)
from ..usage import Usage
from ._names import APPROVE_UPDATE, ENGINE, MEMO_PENDING, MODEL_REQUEST_QUERY, STATUS_QUERY
from ._options import AgentConfig, activity_kwargs
from ._wire import (
    EMPTY_DIGEST,
    Approval,
    Conversation,
    JournalEntry,
    ModelCall,
    ModelCallResult,
    PendingRecord,
    RunOutput,
    StepRecord,
    ToolCall,
    ToolCallResult,
    WorkflowInput,
    decode_deps,
    encode_output,
    extend_digest,
    params_digest,
    usage_counters,
)

__all__ = ["AgentRunInWorkflow", "Runs", "make_workflow_class"]

_RUNS_ATTR = "_perdure_runs"


class ContinueAsNew(BaseException):
    """Raised out of the loop at a step boundary: the workflow continues as new with the run's state.

    Control flow, like a cancellation: a ``BaseException``, so the end-of-attempt classification lets it through.
    """


class _NamedModel(Model):
    """The run's model as workflow code knows it: a name. Requests are activities; nothing here sends one."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def model_name(self) -> str:
        return self._name

    async def request(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> ModelResponse:  # pragma: no cover - the store never calls a body
        raise AssertionError("workflow code never sends a model request: an activity does")


class Runs:
    """The agent runs of one workflow execution, and the query/update handlers that reach them."""

    def __init__(self) -> None:
        self.runs: dict[str, AgentRunInWorkflow] = {}
        self._count = 0

    @classmethod
    def current(cls) -> Runs:
        """This workflow execution's runs; installs the handlers in a user's workflow on first use."""
        instance = workflow.instance()
        runs = getattr(instance, _RUNS_ATTR, None)
        if isinstance(runs, Runs):
            return runs
        runs = cls()
        setattr(instance, _RUNS_ATTR, runs)
        workflow.set_query_handler(STATUS_QUERY, runs.status)
        workflow.set_query_handler(MODEL_REQUEST_QUERY, runs.model_request)
        workflow.set_update_handler(APPROVE_UPDATE, runs.approve, validator=runs.validate_approval)
        return runs

    def next_run_id(self) -> str:
        self._count += 1
        wf_id: str = workflow.info().workflow_id
        return wf_id if self._count == 1 else f"{wf_id}/{self._count}"

    def _run(self, run_id: Any) -> AgentRunInWorkflow:
        run = self.runs.get(str(run_id)) if run_id is not None else None
        if run is None and run_id is None and len(self.runs) == 1:
            run = next(iter(self.runs.values()))
        if run is None:
            known = ", ".join(sorted(self.runs)) or "none"
            raise ApplicationError(
                f"this workflow has no agent run {run_id!r} (runs: {known})", type="UserError", non_retryable=True
            )
        return run

    # --- handlers -------------------------------------------------------------------------------------

    def status(self, arg: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._run((arg or {}).get("run_id")).status_dict()

    def model_request(self, arg: dict[str, Any]) -> dict[str, Any]:
        run = self._run(arg.get("run_id"))
        step = run.current_model
        if step is None or step.key != arg.get("key"):
            raise ApplicationError(
                f"run {run.run_id!r} is not requesting {arg.get('key')!r} now", type="StaleRequest", non_retryable=True
            )
        return Conversation(messages=step.messages, params=step.params).dump()

    def validate_approval(self, arg: dict[str, Any]) -> None:
        approval = Approval.model_validate(arg)
        run = self._run(approval.run_id)
        if approval.tool_call_id not in run.pending:
            waiting = ", ".join(f"{p.tool_name} ({p.tool_call_id})" for p in run.pending.values()) or "none"
            raise ApplicationError(
                f"run {run.run_id!r} has no call {approval.tool_call_id!r} waiting for a decision "
                f"(status {run.status}); waiting: {waiting}",
                type="UserError",
                non_retryable=True,
            )
        if approval.tool_call_id in run.decisions:
            raise ApplicationError(
                f"run {run.run_id!r}: call {approval.tool_call_id!r} was already decided",
                type="UserError",
                non_retryable=True,
            )

    async def approve(self, arg: dict[str, Any]) -> dict[str, Any]:
        approval = Approval.model_validate(arg)
        run = self._run(approval.run_id)
        if approval.tool_call_id in run.pending:  # validators do not run on replay: stay lenient here
            run.decisions[approval.tool_call_id] = Decision(approved=approval.approved, note=approval.note)
        return {"run_id": run.run_id, "status": run.status}

    def publish_pending(self) -> None:
        """Mirror the pending decisions into the memo: callers see ``waiting`` with ``describe()``, no worker."""
        pending = [p.dump() for run in self.runs.values() for p in run.pending.values()]
        workflow.upsert_memo({MEMO_PENDING: pending})


class AgentRunInWorkflow:
    """One agent run executing as workflow code: the ``StepStore`` its ``StepRunner`` records through."""

    def __init__(self, config: AgentConfig, inp: WorkflowInput, runs: Runs, *, builtin: bool) -> None:
        self.config = config
        self.agent = config.agent
        self.inp = inp
        self.run_id = inp.run_id
        self.runs = runs
        self.builtin = builtin
        self.deps = decode_deps(self.agent, inp.deps)
        self.model_name = config.model_name(inp.model)
        self.model_options = config.model_options(inp.model)
        self.status = "running"
        self.runner: StepRunner | None = None
        self.current_model: ModelStep | None = None
        self.pending: dict[str, PendingRecord] = {}
        self.decisions: dict[str, Decision] = dict(inp.decisions)
        # Steps recorded by earlier workflow runs of this agent run (before a continue-as-new): the runner replays
        # them by key, with its checks; the store sees only the steps that follow.
        self.carried: dict[str, JournalEntry] = {e.key: e for e in inp.journal}
        self._recorded = {
            e.key: Record(e.key, e.kind, e.describe, "done", json.dumps(e.result), attempt=0) for e in inp.journal
        }
        self.journal: list[JournalEntry] = []  # steps of this workflow run, in order
        self.steps: list[StepRecord] = list(inp.steps)
        self.usage = self._carried_usage()
        self.output: Any = None
        self.error: dict[str, Any] | None = None
        self.executed_here = 0
        # Delta shipping: what earlier model requests of this workflow run already sent. (After a continue-as-new
        # the first request ships the whole conversation once: the carried steps were not shipped from here.)
        self.sent_count = 0
        self.digest = EMPTY_DIGEST
        self.params_sent = ""
        self._params_obj: object = None
        self._params_digest = ""
        self._activity_prefix = "" if self.run_id == workflow.info().workflow_id else f"{self.run_id}/"
        # Telemetry: never workflow state (nothing here decides a command; it differs between live and replay).
        self._trace_context = inp.trace_context or current_trace_context() or _derived_trace_context(self.run_id)
        self._attempts = inp.attempts  # known so far: carried, echoed by recorded results, or started here
        self._obs: RunAttempt | None = None  # this worker's live attempt
        self._obs_carrier: dict[str, str] | None = None
        self._replayed = 0  # steps replayed since the last attempt started
        self._carried_seen = 0  # carried steps the runner replayed, counted into ``_replayed`` so far
        if self.run_id in runs.runs:
            raise ApplicationError(
                f"agent run {self.run_id!r} already exists in this workflow; pass another run_id",
                type="UserError",
                non_retryable=True,
            )
        runs.runs[self.run_id] = self

    def _carried_usage(self) -> Usage:
        """The run's usage up to the carried steps (the runner replays them all before any step of this run)."""
        usage = Usage()
        for entry in self.carried.values():
            if entry.kind == "model":
                usage.add_response(ModelResponse.model_validate(entry.result).usage)
            elif entry.kind == "tool":
                usage.tool_calls += 1
        return usage

    # --- the run ----------------------------------------------------------------------------------------

    async def run(self) -> AgentRunResult[Any]:
        try:
            result = await self._run()
        except BaseException as e:
            self._attempt_ended(e)
            raise
        self._attempt_ended(None, result)
        return result

    async def _run(self) -> AgentRunResult[Any]:
        run_input = RunInput(
            prompt=self.inp.prompt,
            content=self.inp.content,
            run_id=self.run_id,
            message_history=list(self.inp.message_history),
            usage_limits=self.inp.usage_limits,
            model_settings=self.inp.model_settings,
            model_name=self.inp.model,
        )
        runner = self.runner = StepRunner(
            self.agent,
            self,
            run_id=self.run_id,
            attempt=self.inp.workflow_run,
            model=_NamedModel(self.model_name),
            deps=self.deps,
            prompt=self.inp.prompt,
        )
        end = await run_attempt(self.agent, run_input, runner)
        if end.status == "completed":
            assert end.result is not None
            self.status = "completed"
            self.output, _ = encode_output(end.result.output)
            self.usage = end.result.usage()
            return end.result
        assert end.error is not None
        if end.status in ("cancelled", "released"):  # an activity's cancellation, or the workflow's own
            self.status = "cancelled"
            self.error = {"type": "RunCancelled", "message": f"run {self.run_id!r} was cancelled"}
            raise end.error
        cause = end.error.__cause__
        if type(end.error) is AgentRunError and isinstance(cause, TemporalError):
            raise cause  # the SDK's own errors (a sandbox restriction, say): Temporal decides what they mean
        self.status = "failed"
        self.error = end.record
        raise end.error

    def continue_input(self) -> WorkflowInput:
        """The next workflow run's input: every step so far, carried (the ones replayed from the carried journal
        first, as they were consumed), the decisions not yet consumed, the step records, the telemetry."""
        replayed = self.runner.replayed if self.runner is not None else []
        journal = [self.carried[k] for k in replayed if k in self.carried]
        journal.extend(self.journal)
        seen = {e.key for e in journal}
        journal.extend(e for e in self.carried.values() if e.key not in seen)
        return self.inp.model_copy(
            update={
                "journal": journal,
                "decisions": dict(self.decisions),
                "steps": list(self.steps),
                "workflow_run": self.inp.workflow_run + 1,
                "trace_context": self._trace_context,
                "attempts": self._attempts,
            }
        )

    # --- the StepStore port -----------------------------------------------------------------------------

    @property
    def recorded(self) -> Mapping[str, Record]:
        return self._recorded

    def cancel_requested(self) -> bool:
        return False  # Temporal delivers a cancellation into the awaited activity or wait, as CancelledError

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        """Ship the step to its activity (the body is what the activity runs; an at-most-once tool that Temporal
        retries is never run again there, see ``_activities``)."""
        step = call.step
        assert isinstance(step, ModelStep | ToolStep), "the runner hands model and tool steps over with the step"
        self._begin(wait=False)
        result = await (self._model(step) if isinstance(step, ModelStep) else self._tool(step))
        if isinstance(result, Record):
            return result  # the recorded result answered another step: the runner reports the mismatch
        if self.builtin:
            self.journal.append(
                JournalEntry(
                    key=call.key, kind=step.kind, describe=call.describe, result=result.model_dump(mode="json")
                )
            )
        return Record(call.key, call.kind, call.describe, "done", attempt=call.attempt, value=result)

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        """Parallel calls: one coroutine per call, in the order the loop listed them, so their activities are
        scheduled in that order; every one is awaited even if one fails, then the first error is raised."""
        outcomes = await asyncio.gather(
            *(self.step(c, b) for c, b in zip(calls, bodies, strict=True)), return_exceptions=True
        )
        records: list[Record] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            records.append(outcome)
        return records

    async def wait(self, calls: Sequence[WaitCall]) -> Mapping[str, Decision]:
        """Wait in the workflow (server-side, holding no worker) for each call's ``perdure.approve`` update."""
        if len(calls) == 1:
            return {calls[0].key: await self._wait(calls[0])}
        outcomes = await asyncio.gather(*(self._wait(c) for c in calls), return_exceptions=True)
        decisions: dict[str, Decision] = {}
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            decisions[call.key] = outcome
        return decisions

    # --- steps ------------------------------------------------------------------------------------------

    def _begin(self, *, wait: bool) -> None:
        """A step of this workflow run starts: continue as new first if it is due; count it for telemetry."""
        self._count_carried()
        if self.builtin and self.executed_here > 0 and self._continue_as_new_due():
            raise ContinueAsNew
        self.executed_here += 1
        if workflow.unsafe.is_replaying():
            self._replayed += 1
        elif not wait:
            self._attempt().executed_steps += 1

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self.config.max_history_events
        return limit is not None and info.get_current_history_length() >= limit

    def _ship(self, step: ModelStep) -> ModelCall:
        """The model activity's input: only what no earlier request of this run sent."""
        new = step.messages[self.sent_count :]
        prefix_count, prefix_digest = self.sent_count, self.digest
        digest = extend_digest(prefix_digest, new)
        if step.params is not self._params_obj:
            self._params_obj, self._params_digest = step.params, params_digest(step.params)
        call = ModelCall(
            run_id=self.run_id,
            key=step.key,
            turn=step.turn,
            describe=step.describe(),
            model=self.inp.model,
            settings=step.settings,
            prefix_count=prefix_count,
            prefix_digest=prefix_digest,
            digest=digest,
            new_messages=new,
            params=step.params if self._params_digest != self.params_sent else None,
            params_digest=self._params_digest,
            attempt=self._attempts,
            trace_context=self._obs_carrier,
        )
        self.sent_count, self.digest, self.params_sent = len(step.messages), digest, self._params_digest
        return call

    async def _model(self, step: ModelStep) -> ModelResponse | Record:
        call = self._ship(step)
        record = self._start(step.key, step.kind, step.describe())
        self.current_model = step
        try:
            raw = await self._activity(self.config.model_activity_name, call.dump(), step, self.model_options)
        finally:
            self.current_model = None
        result = ModelCallResult.model_validate(raw)
        if result.key != step.key or result.describe != step.describe():
            return _echo(step, result.key, result.describe)
        self._attempts = max(self._attempts, result.attempt)
        usage = result.response.usage
        self._finish(record, usage.input_tokens, usage.output_tokens)
        self.usage.add_response(usage)
        return result.response

    async def _tool(self, step: ToolStep) -> ToolOutcome | Record:
        call = ToolCall(
            run_id=self.run_id,
            key=step.key,
            turn=step.turn,
            describe=step.describe(),
            tool_name=step.tool_name,
            args=step.args,
            tool_call_id=step.tool_call_id,
            side_effects=step.side_effects,
            idempotency_key=step.idempotency_key,
            retry=step.retry,
            prompt=self.inp.prompt,
            deps=self.inp.deps,
            attempt=self._attempts,
            trace_context=self._obs_carrier,
            usage=usage_counters(step.usage),
            model_name=step.model_name,
        )
        record = self._start(step.key, step.kind, step.describe())
        self.usage.tool_calls += 1
        options = self.config.tool_options(step.tool_name)
        raw = await self._activity(self.config.tool_activity_name, call.dump(), step, options)
        result = ToolCallResult.model_validate(raw)
        if result.key != step.key or result.describe != step.describe():
            return _echo(step, result.key, result.describe)
        self._attempts = max(self._attempts, result.attempt)
        self._finish(record)
        return result.outcome

    async def _wait(self, call: WaitCall) -> Decision:
        self._begin(wait=True)
        call_id = call.tool_call_id
        record = self._start(call.key, call.key.split("/")[2], call.describe, status="waiting")
        pending = self.pending[call_id] = PendingRecord(
            run_id=self.run_id,
            tool_call_id=call_id,
            tool_name=call.tool_name,
            args=call.args,
            reason=call.reason,
            key=call.key,
            since=workflow.time(),
        )
        self.status = "waiting"
        self.runs.publish_pending()
        if not workflow.unsafe.is_replaying():
            # The run now waits server-side, holding no worker: this attempt ends, as on the other engines.
            self._end_attempt("waiting")
            approval_wait_started(agent_name=self.agent.name, engine=ENGINE)
        waited_in = max(self._attempts, 1)
        try:
            await workflow.wait_condition(lambda: call_id in self.decisions)
        finally:
            del self.pending[call_id]  # decided, or the run was cancelled while it waited
            if not workflow.unsafe.is_replaying():
                self._wait_ended(call, pending, waited_in)
        decision = self.decisions.pop(call_id)
        if not self.pending:
            self.status = "running"
        self.runs.publish_pending()
        self._finish(record)
        if self.builtin:
            self.journal.append(
                JournalEntry(key=call.key, kind="wait", describe=call.describe, result=decision.model_dump(mode="json"))
            )
        return decision

    def _wait_ended(self, call: WaitCall, pending: PendingRecord, attempt: int) -> None:
        """The wait's span, reported live by the worker that applies the decision (or the cancellation)."""
        decision = self.decisions.get(call.tool_call_id)
        approval_wait_ended(
            agent_name=self.agent.name,
            run_id=self.run_id,
            engine=ENGINE,
            attempt=attempt,
            tool_name=call.tool_name,
            tool_call_id=call.tool_call_id,
            reason=call.reason,
            outcome="cancelled" if decision is None else "approved" if decision.approved else "denied",
            started_at=pending.since,
            trace_context=self._trace_context,
            args=call.args,
            note=decision.note if decision is not None else None,
        )

    async def _activity(self, name: str, payload: dict[str, Any], step: Step, options: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await workflow.execute_activity(
                name, payload, activity_id=self._activity_id(step), **activity_kwargs(options)
            )
        except ActivityError as e:
            raise self._step_error(step, e) from None
        return result

    def _activity_id(self, step: Step) -> str:
        """``<step key>: <what the step is>``. Temporal checks activity ids on replay, so a changed agent whose
        run no longer replays fails there, with both descriptions in the error (``NonDeterminismError``)."""
        describe = step.describe()
        if len(describe) > 300:  # ids are bounded (1000 characters); a digest keeps the check exact
            describe = f"{describe[:240]}... #{hashlib.sha256(describe.encode()).hexdigest()[:16]}"
        return f"{self._activity_prefix}{step.key}: {describe}"

    def _step_error(self, step: Step, error: ActivityError) -> PerdureError:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.details:
            record = cause.details[0]
            if isinstance(record, dict) and isinstance(record.get("type"), str) and "message" in record:
                return error_from_record(record)
        if isinstance(cause, CancelledError):
            return RunCancelled(f"run {self.run_id!r} was cancelled during {step.describe()}")
        where = f"run {self.run_id!r}, step {step.key!r} ({step.describe()})"
        if isinstance(cause, TimeoutError):
            return AgentRunError(f"{where} timed out ({cause.type.name.lower()}) on its last attempt")
        return AgentRunError(f"{where} failed: {cause or error}")

    def _start(self, key: str, kind: str, describe: str, status: str = "running") -> StepRecord:
        record = StepRecord(
            key=key,
            kind=kind,
            status=status,
            describe=describe,
            started_at=workflow.time(),
            workflow_run=self.inp.workflow_run,
        )
        self.steps.append(record)
        return record

    def _finish(self, record: StepRecord, input_tokens: int = 0, output_tokens: int = 0) -> None:
        record.status = "done"
        record.finished_at = workflow.time()
        record.input_tokens = input_tokens
        record.output_tokens = output_tokens

    # --- telemetry ------------------------------------------------------------------------------------------

    def _count_carried(self) -> None:
        """Carried steps the runner replayed since the last look count as replayed steps of the attempt."""
        replayed = len(self.runner.replayed) if self.runner is not None else 0
        self._replayed += replayed - self._carried_seen
        self._carried_seen = replayed

    def _attempt(self) -> RunAttempt:
        """This worker's live attempt at the run, started by the first step it schedules live."""
        obs = self._obs
        if obs is None:
            self._attempts += 1
            obs = self._obs = start_attempt(
                self.agent,
                run_id=self.run_id,
                engine=ENGINE,
                attempt=self._attempts,
                trace_context=self._trace_context,
                model=self.model_name,
                prompt=self.inp.prompt,
                new_run=not self.builtin and self._attempts == 1,  # a run in your workflow: accepted right here
            )
            obs.replayed_steps, self._replayed = self._replayed, 0
            self._obs_carrier = obs.trace_context
        return obs

    def _end_attempt(self, status: RunStatus, error: BaseException | None = None) -> None:
        self._count_carried()
        obs, self._obs, self._obs_carrier = self._obs, None, None
        if obs is not None:
            obs.replayed_steps += self._replayed
            self._replayed = 0
            obs.end(status, error)

    def _attempt_ended(self, error: BaseException | None, result: AgentRunResult[Any] | None = None) -> None:
        """The run's code stopped in this worker: it ended, continued as new, or left the worker."""
        if workflow.unsafe.is_replaying():
            # Evicted from this worker (Temporal cancels its tasks "in replay"), or a replay of a run that ended:
            # no new fact about the run; an attempt this worker had going ends without ending the run.
            self._end_attempt("interrupted")
            return
        if self.status in ("completed", "failed", "cancelled"):
            self._count_carried()
            obs = self._attempt()  # a worker may pick the run up only to end it (its last result, a cancel)
            if result is not None:
                obs.set_result(result)
            status: RunStatus = "completed" if self.status == "completed" else "failed"
            if self.status == "cancelled":
                status = "cancelled"
            self._end_attempt(status, error)
        else:
            self._end_attempt("interrupted")  # continue-as-new, or the SDK's own control flow

    # --- inspection -------------------------------------------------------------------------------------

    def status_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agent": self.agent.name,
            "status": self.status,
            "prompt": self.inp.prompt,
            "fingerprint": self.inp.fingerprint,
            "workflow_run": self.inp.workflow_run,
            "usage": {**self.usage.__dict__},
            "steps": [s.dump() for s in self.steps],
            "pending": [p.dump() for p in self.pending.values()],
            "output": self.output,
            "error": self.error,
        }

    def result_dict(self, result: AgentRunResult[Any]) -> dict[str, Any]:
        output, kind = encode_output(result.output)
        return RunOutput(
            output=output,
            output_type=kind,
            messages=result.all_messages(),
            new_from=len(result.all_messages()) - len(result.new_messages()),
            usage=result.usage(),
        ).dump()


def _echo(step: Step, key: str, describe: str) -> Record:
    """The recorded result names another step than the loop asks for (a changed agent): the runner's check
    reports it as a ``NonDeterminismError`` naming both."""
    recorded = describe if key == step.key else f"{describe} (recorded for step {key!r})"
    return Record(step.key, step.kind, recorded, "done", None)


# --- the built-in workflow ----------------------------------------------------------------------------------


class AgentWorkflowBase:
    """The built-in agent workflow; ``make_workflow_class`` subclasses it once per agent."""

    _perdure_config: AgentConfig

    def __init__(self) -> None:
        self._perdure_runs = Runs()

    # temporalio is untyped for mypy (follow_imports=skip): its decorators need an ignore.
    @workflow.query(name=STATUS_QUERY)  # type: ignore[untyped-decorator]
    def perdure_status(self, arg: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._perdure_runs.status(arg)

    @workflow.query(name=MODEL_REQUEST_QUERY)  # type: ignore[untyped-decorator]
    def perdure_model_request(self, arg: dict[str, Any]) -> dict[str, Any]:
        return self._perdure_runs.model_request(arg)

    @workflow.update(name=APPROVE_UPDATE)  # type: ignore[untyped-decorator]
    async def perdure_approve(self, arg: dict[str, Any]) -> dict[str, Any]:
        return await self._perdure_runs.approve(arg)

    @perdure_approve.validator  # type: ignore[untyped-decorator]
    def perdure_validate_approval(self, arg: dict[str, Any]) -> None:
        self._perdure_runs.validate_approval(arg)

    async def _perdure_run(self, payload: dict[str, Any]) -> dict[str, Any]:
        inp = WorkflowInput.model_validate(payload)
        run = AgentRunInWorkflow(self._perdure_config, inp, self._perdure_runs, builtin=True)
        try:
            result = await run.run()
        except ContinueAsNew:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(run.continue_input().dump())
        except RunCancelled as e:
            raise CancelledError(e.message) from None
        except PerdureError as e:
            raise ApplicationError(e.message, e.to_record(), type=type(e).__name__, non_retryable=True) from None
        await workflow.wait_condition(workflow.all_handlers_finished)
        return run.result_dict(result)


_counter = itertools.count(1)


def _derived_trace_context(run_id: str) -> dict[str, str]:
    """The trace of a run that recorded none (accepted without tracing configured, or run inside a workflow that
    is not traced): derived from its ids, the same in every worker, so its attempts still share one trace."""
    info = workflow.info()
    digest = hashlib.sha256(f"{info.workflow_id}\0{info.first_execution_run_id}\0{run_id}".encode()).hexdigest()
    return {"traceparent": f"00-{digest[:32]}-{digest[32:48]}-01"}


def make_workflow_class(config: AgentConfig) -> type:
    """The built-in workflow of one agent: its own workflow type, ``perdure:<agent name>``.

    The class is published in this module under a unique name: the sandbox finds a workflow class by module and
    name, and this module is passed through, so every sandboxed run sees the same class and agent.
    """

    async def run(self: AgentWorkflowBase, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._perdure_run(payload)

    name = f"AgentWorkflow_{next(_counter)}"
    run.__qualname__ = f"{name}.run"  # the SDK checks that the run method is the class's own
    cls = type(name, (AgentWorkflowBase,), {"run": workflow.run(run), "_perdure_config": config})
    cls.__module__ = __name__
    setattr(sys.modules[__name__], name, cls)
    failures = [workflow.NondeterminismError] if config.fail_on_nondeterminism else []
    defn = workflow.defn(name=config.workflow_name, failure_exception_types=failures)
    return defn(cls)  # type: ignore[no-any-return]
