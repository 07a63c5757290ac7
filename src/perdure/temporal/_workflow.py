"""Workflow side: the agent loop as deterministic workflow code, each step an activity or a wait.

``AgentRunInWorkflow`` drives one agent run inside any workflow (the built-in one, or the user's own
``@workflow.defn``): a ``ModelStep`` or ``ToolStep`` becomes an activity, a ``WaitStep`` waits for the
``perdure.approve`` update. ``Runs`` holds the agent runs of one workflow execution and answers the queries and
the update. ``make_workflow_class`` builds the built-in workflow of a ``TemporalAgent``: workflow id = run id,
continue-as-new when Temporal suggests it, carrying every step result so the new run replays the loop to where
it stopped.

Everything here runs in the workflow sandbox with ``perdure`` passed through: no I/O, no clock, no randomness.

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
import sys
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TemporalError,
    TimeoutError,
)

from .._exceptions import (
    AgentRunError,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
    error_from_record,
)
from .._loop import AgentLoop, AgentRunResult, RunInput, drive
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, WaitStep
from ..messages import ModelResponse
from ..observability._spans import (
    RunAttempt,
    RunStatus,
    approval_wait_ended,
    approval_wait_started,
    current_trace_context,
    start_attempt,
)
from ._options import activity_kwargs
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
    dump_result,
    encode_output,
    extend_digest,
    load_result,
    params_digest,
)

if TYPE_CHECKING:
    from ._agent import TemporalAgent

# Persisted names (compatibility data: pinned by tests/temporal/test_api.py).
STATUS_QUERY = "perdure.status"
MODEL_REQUEST_QUERY = "perdure.model_request"
APPROVE_UPDATE = "perdure.approve"
MEMO_AGENT = "perdure.agent"
MEMO_FINGERPRINT = "perdure.fingerprint"
MEMO_PROMPT = "perdure.prompt"
MEMO_PENDING = "perdure.pending"

_RUNS_ATTR = "_perdure_runs"

ENGINE = "temporal"


class ContinueAsNew(Exception):
    """Raised out of the loop at a step boundary: the workflow continues as new with the run's state."""


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
    """One agent run executing as workflow code."""

    def __init__(self, temporal_agent: TemporalAgent[Any, Any], inp: WorkflowInput, runs: Runs, *, builtin: bool):
        self.ta = temporal_agent
        self.agent = temporal_agent.agent
        self.inp = inp
        self.run_id = inp.run_id
        self.runs = runs
        self.builtin = builtin
        self.deps = decode_deps(self.agent, inp.deps)
        self.model_name = temporal_agent._model_name(inp.model)
        self.model_options = temporal_agent._model_options(inp.model)
        self.status = "running"
        self.loop: AgentLoop[Any] | None = None
        self.current_model: ModelStep | None = None
        self.pending: dict[str, PendingRecord] = {}
        self.decisions: dict[str, Decision] = dict(inp.decisions)
        self.carried: dict[str, JournalEntry] = {e.key: e for e in inp.journal}
        self.journal: list[JournalEntry] = []
        self.steps: list[StepRecord] = list(inp.steps)
        self.output: Any = None
        self.error: dict[str, Any] | None = None
        self.executed_here = 0
        # Delta shipping: what earlier model requests of this run already sent.
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
        if self.run_id in runs.runs:
            raise ApplicationError(
                f"agent run {self.run_id!r} already exists in this workflow; pass another run_id",
                type="UserError",
                non_retryable=True,
            )
        runs.runs[self.run_id] = self

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
            run_id=self.run_id,
            message_history=list(self.inp.message_history),
            usage_limits=self.inp.usage_limits,
            model_settings=self.inp.model_settings,
            model_name=self.inp.model,
        )
        self.loop = AgentLoop(self.agent, run_input, self.deps, self.model_name)
        try:
            result = await drive(self.loop, self.execute)
        except ContinueAsNew:
            raise
        except (asyncio.CancelledError, RunCancelled):
            self.status = "cancelled"
            self.error = {"type": "RunCancelled", "message": f"run {self.run_id!r} was cancelled"}
            raise
        except PerdureError as e:
            self._fail(e.to_record())
            raise
        except Exception as e:
            if isinstance(e, TemporalError):
                raise  # the SDK's own errors and control flow
            record = {"type": "AgentRunError", "message": f"run {self.run_id!r} failed: {type(e).__name__}: {e}"}
            self._fail(record)
            raise AgentRunError(record["message"]) from e
        self.status = "completed"
        self.output, _ = encode_output(result.output)
        return result

    def _fail(self, record: dict[str, Any]) -> None:
        self.status = "failed"
        self.error = record

    async def execute(self, step: Step) -> StepResult:
        carried = self.carried.pop(step.key, None)
        if carried is not None:
            self._replayed += 1
            return self._replay(step, carried)
        self._check_divergence(step)
        if self.builtin and self.executed_here > 0 and self._continue_as_new_due():
            raise ContinueAsNew
        self.executed_here += 1
        if workflow.unsafe.is_replaying():
            self._replayed += 1
        elif not isinstance(step, WaitStep):
            self._attempt().executed_steps += 1
        if isinstance(step, ModelStep):
            result: StepResult = await self._model(step)
        elif isinstance(step, ToolStep):
            result = await self._tool(step)
        else:
            result = await self._wait(step)
        if self.builtin:
            self.journal.append(
                JournalEntry(key=step.key, kind=step.kind, describe=step.describe(), result=dump_result(result))
            )
        return result

    def _replay(self, step: Step, carried: JournalEntry) -> StepResult:
        """A step recorded by an earlier workflow run of this agent run (before a continue-as-new)."""
        if carried.kind != step.kind or carried.describe != step.describe():
            raise NonDeterminismError(
                run_id=self.run_id, step_key=step.key, recorded=carried.describe, requested=step.describe()
            )
        if isinstance(step, ModelStep):
            self._ship(step)
        self.journal.append(carried)
        return load_result(step, carried.result)

    def _check_divergence(self, step: Step) -> None:
        """A new step is about to execute: the carried journal must not hold steps of a path the loop left."""
        for rec in self.carried.values():
            rec_turn = int(rec.key.split("/")[1])
            if rec_turn > step.turn or (step.kind == "model" and rec_turn == step.turn):
                raise NonDeterminismError(
                    run_id=self.run_id, step_key=rec.key, recorded=rec.describe, requested=step.describe()
                )

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self.ta.max_history_events
        return limit is not None and info.get_current_history_length() >= limit

    def continue_input(self) -> WorkflowInput:
        journal = list(self.journal)
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

    # --- steps ------------------------------------------------------------------------------------------

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

    async def _model(self, step: ModelStep) -> ModelResponse:
        call = self._ship(step)
        record = self._start(step)
        self.current_model = step
        try:
            raw = await self._activity(self.ta.model_activity_name, call.dump(), step, self.model_options)
        finally:
            self.current_model = None
        result = ModelCallResult.model_validate(raw)
        self._check_echo(step, result.key, result.describe)
        self._attempts = max(self._attempts, result.attempt)
        self._finish(record, result.response.usage.input_tokens, result.response.usage.output_tokens)
        return result.response

    async def _tool(self, step: ToolStep) -> StepResult:
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
        )
        record = self._start(step)
        raw = await self._activity(self.ta.tool_activity_name, call.dump(), step, self.ta._tool_options(step.tool_name))
        result = ToolCallResult.model_validate(raw)
        self._check_echo(step, result.key, result.describe)
        self._attempts = max(self._attempts, result.attempt)
        self._finish(record)
        return result.outcome

    async def _wait(self, step: WaitStep) -> StepResult:
        call_id = step.tool_call_id
        record = self._start(step, status="waiting")
        pending = self.pending[call_id] = PendingRecord(
            run_id=self.run_id,
            tool_call_id=call_id,
            tool_name=step.tool_name,
            args=step.args,
            reason=step.reason,
            key=step.key,
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
                self._wait_ended(step, pending, waited_in)
        decision = self.decisions.pop(call_id)
        if not self.pending:
            self.status = "running"
        self.runs.publish_pending()
        self._finish(record)
        return decision

    def _wait_ended(self, step: WaitStep, pending: PendingRecord, attempt: int) -> None:
        """The wait's span, reported live by the worker that applies the decision (or the cancellation)."""
        decision = self.decisions.get(step.tool_call_id)
        approval_wait_ended(
            agent_name=self.agent.name,
            run_id=self.run_id,
            engine=ENGINE,
            attempt=attempt,
            tool_name=step.tool_name,
            tool_call_id=step.tool_call_id,
            reason=step.reason,
            outcome="cancelled" if decision is None else "approved" if decision.approved else "denied",
            started_at=pending.since,
            trace_context=self._trace_context,
            args=step.args,
            note=decision.note if decision is not None else None,
        )

    # --- telemetry ------------------------------------------------------------------------------------------

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
            obs = self._attempt()  # a worker may pick the run up only to end it (its last result, a cancel)
            if result is not None:
                obs.set_result(result)
            status: RunStatus = "completed" if self.status == "completed" else "failed"
            if self.status == "cancelled":
                status = "cancelled"
            self._end_attempt(status, error)
        else:
            self._end_attempt("interrupted")  # continue-as-new, or the SDK's own control flow

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

    def _check_echo(self, step: Step, key: str, describe: str) -> None:
        """The recorded result names the step it answered: a changed agent cannot reuse another step's result."""
        if key != step.key or describe != step.describe():
            raise NonDeterminismError(
                run_id=self.run_id, step_key=step.key, recorded=describe, requested=step.describe()
            )

    def _start(self, step: Step, status: str = "running") -> StepRecord:
        record = StepRecord(
            key=step.key,
            kind=step.kind if step.kind != "wait" else step.key.split("/")[2],
            status=status,
            describe=step.describe(),
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

    # --- inspection -------------------------------------------------------------------------------------

    def status_dict(self) -> dict[str, Any]:
        usage = self.loop.usage if self.loop is not None else None
        return {
            "run_id": self.run_id,
            "agent": self.agent.name,
            "status": self.status,
            "prompt": self.inp.prompt,
            "fingerprint": self.inp.fingerprint,
            "workflow_run": self.inp.workflow_run,
            "usage": {**usage.__dict__} if usage is not None else {},
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


# --- the built-in workflow ----------------------------------------------------------------------------------


class AgentWorkflowBase:
    """The built-in agent workflow; ``make_workflow_class`` subclasses it once per ``TemporalAgent``."""

    _perdure_agent: TemporalAgent[Any, Any]

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
        run = AgentRunInWorkflow(self._perdure_agent, inp, self._perdure_runs, builtin=True)
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


def make_workflow_class(temporal_agent: TemporalAgent[Any, Any]) -> type:
    """The built-in workflow of one ``TemporalAgent``: its own workflow type, ``perdure:<agent name>``.

    The class is published in this module under a unique name: the sandbox finds a workflow class by module and
    name, and this module is passed through, so every sandboxed run sees the same class and agent.
    """

    async def run(self: AgentWorkflowBase, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._perdure_run(payload)

    name = f"AgentWorkflow_{next(_counter)}"
    run.__qualname__ = f"{name}.run"  # the SDK checks that the run method is the class's own
    cls = type(name, (AgentWorkflowBase,), {"run": workflow.run(run), "_perdure_agent": temporal_agent})
    cls.__module__ = __name__
    setattr(sys.modules[__name__], name, cls)
    failures = [workflow.NondeterminismError] if temporal_agent.fail_on_nondeterminism else []
    defn = workflow.defn(name=temporal_agent.workflow_name, failure_exception_types=failures)
    return defn(cls)  # type: ignore[no-any-return]
