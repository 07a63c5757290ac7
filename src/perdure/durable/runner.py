"""``StepRunner``: run-or-replay every step of one attempt over an engine's ``StepStore``, written once.

What it owns, for every engine: the replay checks (a recorded step must be what the loop asks for now; the loop
must not leave a recorded path; every recorded call of a turn must be asked for again), the at-most-once rule (an
interrupted at-most-once call is never run again: its outcome is unknown), cancellation at step boundaries,
batches handed to the store whole, and the end of an attempt classified into one ``AttemptEnd``.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._engine import perform_model_step, perform_tool_step_with_error
from .._exceptions import AgentRunError, NonDeterminismError, PerdureError, RunCancelled
from .._loop import AgentRunResult, RunInput, drive
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep, WaitStep
from .._tools import ToolOutcome
from .codec import decode_result, encode_result
from .ports import ClaimLost, Done, Record, StepCall, StepStore, Suspend, WaitCall

if TYPE_CHECKING:
    from .._agent import Agent
    from ..models import Model

__all__ = ["AttemptEnd", "StepRunner", "run_attempt", "unknown_outcome"]

T = TypeVar("T")


class StepRunner:
    """Executes or replays the steps of one attempt of one run through ``store``."""

    def __init__(
        self,
        agent: Agent[Any, Any],
        store: StepStore,
        *,
        run_id: str,
        attempt: int,
        model: Model,
        deps: Any,
        prompt: str | None,
        replay_only: bool = False,
    ) -> None:
        self.agent = agent
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.model = model
        self.deps = deps
        self.prompt = prompt
        self.replay_only = replay_only
        """Rebuilding a finished run's result: a step that is not recorded is a divergence, never executed."""
        self.recorded: Mapping[str, Record] = store.recorded
        self.replayed: list[str] = []
        self.executed: list[str] = []
        self.tool_errors: dict[str, BaseException] = {}
        """The exception behind each failed tool call (by step key): the run's ToolError is caused by it."""
        self._consumed: set[str] = set()
        self._cancelled = False
        self._inflight: set[asyncio.Task[Any]] = set()
        self._tools_inflight: set[asyncio.Task[Any]] = set()
        self._lost: ClaimLost | None = None

    # --- cancellation -------------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop at the next step boundary; an in-flight model request is abandoned."""
        self._cancelled = True
        for task in self._inflight:
            task.cancel()

    def _check_cancelled(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._cancelled or self.store.cancel_requested():
            self._cancelled = True
            raise RunCancelled(f"run {self.run_id!r} was cancelled")

    # --- the loop's two entry points ------------------------------------------------------------------------

    async def execute(self, step: Step) -> StepResult:
        return (await self.execute_batch([step]))[0]

    async def execute_batch(self, steps: list[Step]) -> list[StepResult]:
        """Replay what is recorded; hand what is not to the store as one batch; then wait for decisions."""
        self._check_cancelled()
        results: dict[str, StepResult] = {}
        to_run: list[ModelStep | ToolStep] = []
        to_wait: list[WaitStep] = []
        for step in steps:
            replayed = await self._replay(step)
            if replayed is not None:
                results[step.key] = replayed
            elif isinstance(step, WaitStep):
                to_wait.append(step)
            elif step.key in self.recorded and self.recorded[step.key].status == "started":
                # An at-most-once call that an earlier attempt started and never finished: it is not run again;
                # the store records its outcome as unknown.
                call = self._call(step)
                record = await self.store.step(call, self._unknown_outcome, interrupted=self._unknown_outcome)
                results[step.key] = self._decode(step, record)
            else:
                to_run.append(step)
        if to_run:
            calls = [self._call(s) for s in to_run]
            bodies = [self._body(s) for s in to_run]
            if len(to_run) == 1:
                records = [await self._one(to_run[0], calls[0], bodies[0])]
            else:
                records = await self.store.step_batch(calls, bodies)
            for step, record in zip(to_run, records, strict=True):
                results[step.key] = self._decode(step, record)
        if to_wait:
            decisions = await self.store.wait([self._wait_call(w) for w in to_wait])
            for w in to_wait:
                results[w.key] = decisions[w.key]
        return [results[s.key] for s in steps]

    async def _one(self, step: ModelStep | ToolStep, call: StepCall, body: Any) -> Record:
        interrupted = (
            self._unknown_outcome if isinstance(step, ToolStep) and step.side_effects == "at_most_once" else None
        )
        return await self.store.step(call, body, interrupted=interrupted)

    async def _tracked(self, coro: Coroutine[Any, Any, T], *, model: bool) -> T:
        """Run a step as a task, so that a cancellation can abandon a model request mid-flight and a lost claim
        can stop everything this attempt has in flight."""
        task = asyncio.ensure_future(coro)
        (self._inflight if model else self._tools_inflight).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if self._lost is not None:
                raise self._lost from None
            if self._cancelled and model:
                raise RunCancelled(f"run {self.run_id!r} was cancelled during a model request") from None
            raise
        finally:
            self._inflight.discard(task)
            self._tools_inflight.discard(task)

    def abandon(self, error: ClaimLost) -> None:
        """Another process owns the run now: stop every step in flight at once (tool calls too)."""
        self._lost = error
        for task in [*self._inflight, *self._tools_inflight]:
            task.cancel()

    # --- replay ---------------------------------------------------------------------------------------------

    async def _replay(self, step: Step) -> StepResult | None:
        """The recorded result of ``step`` (checked against what the loop asks for), or None to execute it."""
        if isinstance(step, ModelStep) and self.recorded:
            self._check_previous_turn_consumed(step)
        rec = self.recorded.get(step.key)
        if rec is None:
            if self.replay_only:
                raise NonDeterminismError(
                    run_id=self.run_id,
                    step_key=step.key,
                    recorded="no such step (the run is finished)",
                    requested=step.describe(),
                )
            self._check_divergence(step)
            return None
        self._consumed.add(step.key)
        self._check_same(step, rec)
        if rec.status == "failed":
            return None  # a request that failed in an earlier attempt is asked again
        if rec.status == "done" and rec.result is not None:
            self.replayed.append(step.key)
            return decode_result(step, rec.result)
        if rec.status == "waiting":
            raise Suspend([step.key])
        return None  # an at-most-once mark: the store records the unknown outcome through ``step``

    def _check_same(self, step: Step, rec: Record) -> None:
        if rec.kind != step.kind or rec.describe != step.describe():
            raise NonDeterminismError(
                run_id=self.run_id, step_key=step.key, recorded=rec.describe, requested=step.describe()
            )

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
        for rec in self.recorded.values():
            rec_turn = int(rec.key.split("/")[1])
            if rec_turn > step.turn or (step.kind == "model" and rec_turn == step.turn):
                raise NonDeterminismError(
                    run_id=self.run_id, step_key=rec.key, recorded=rec.describe, requested=step.describe()
                )

    def _decode(self, step: Step, record: Record) -> StepResult:
        """A record the store handed back: just executed, or replayed natively by the engine (checked here)."""
        if record.value is not None:  # executed by this attempt, in this process: nothing to check or decode
            self.executed.append(step.key)
            value: StepResult = record.value
            return value
        self._check_same(step, record)
        if record.result is None:  # pragma: no cover - a store returns results for done steps
            raise AgentRunError(f"run {self.run_id!r}: step {step.key!r} has no recorded result")
        if record.attempt == self.attempt and step.key not in self.recorded:
            self.executed.append(step.key)
        else:
            self.replayed.append(step.key)
        return decode_result(step, record.result)

    # --- execution --------------------------------------------------------------------------------------------

    def _call(self, step: ModelStep | ToolStep) -> StepCall:
        at_most_once = isinstance(step, ToolStep) and step.side_effects == "at_most_once"
        return StepCall(self.run_id, step.key, step.kind, step.describe(), self.attempt, at_most_once, step)

    def _wait_call(self, step: WaitStep) -> WaitCall:
        return WaitCall(
            run_id=self.run_id,
            key=step.key,
            describe=step.describe(),
            attempt=self.attempt,
            tool_name=step.tool_name,
            tool_call_id=step.tool_call_id,
            args=step.args,
            reason=step.reason,
        )

    def _body(self, step: ModelStep | ToolStep) -> Any:
        """What executing ``step`` means, run as a tracked task (so that it can be abandoned); the store records
        its result in the attempt's own task, with no extra turn of the event loop (group commit relies on it)."""
        if isinstance(step, ModelStep):

            async def model_body() -> Done:
                self._check_cancelled()
                response = await perform_model_step(self.model, step, self.agent.retry_config)
                usage = response.usage
                return Done(encode_result(response), usage.input_tokens, usage.output_tokens, value=response)

            return lambda: self._tracked(model_body(), model=True)

        async def tool_body() -> Done:
            self._check_cancelled()
            outcome, error = await perform_tool_step_with_error(
                self.agent, step, deps=self.deps, run_id=self.run_id, prompt=self.prompt
            )
            if error is not None:
                self.tool_errors[step.tool_name] = error
                if outcome.traceback is None:
                    outcome = outcome.model_copy(update={"traceback": _format(error)})
            return Done(encode_result(outcome), value=outcome)

        return lambda: self._tracked(tool_body(), model=False)

    _unknown_outcome = staticmethod(lambda: unknown_outcome())


async def unknown_outcome() -> Done:
    """What an interrupted at-most-once call records instead of running again: its outcome is unknown."""
    outcome = ToolOutcome(kind="unknown")
    return Done(encode_result(outcome), value=outcome)


def _format(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


# --- one attempt, end to end -------------------------------------------------------------------------------------


@dataclass
class AttemptEnd:
    """How an attempt ended, classified once for every engine.

    ``completed`` (``result``), ``waiting`` (``pending`` keys), ``cancelled`` / ``failed`` (``error``: the raised
    exception, ``record``: what to persist), or ``released`` (the caller's task was cancelled: the run is left for
    any process to resume; nothing is recorded as failed), or ``lost`` (another process took the run over while
    this one stalled: it writes nothing more).
    """

    status: Literal["completed", "waiting", "cancelled", "failed", "released", "lost"]
    result: AgentRunResult[Any] | None = None
    error: BaseException | None = None
    record: dict[str, Any] | None = None
    pending: list[str] = field(default_factory=list)

    def raise_or_return(self) -> AgentRunResult[Any]:
        if self.status == "completed":
            assert self.result is not None
            return self.result
        assert self.error is not None
        raise self.error


async def run_attempt(agent: Agent[Any, Any], run: RunInput, runner: StepRunner) -> AttemptEnd:
    """Drive the agent loop through ``runner`` to the end of this attempt, and classify how it ended."""
    try:
        result = await drive(agent.new_loop(run, runner.deps, runner.model), runner.execute, runner.execute_batch)
    except Suspend as e:
        return AttemptEnd("waiting", pending=e.keys)
    except RunCancelled as e:
        return AttemptEnd("cancelled", error=e, record=e.to_record())
    except ClaimLost as e:
        return AttemptEnd("lost", error=e)
    except PerdureError as e:
        cause = runner.tool_errors.get(getattr(e, "tool_name", ""))
        if cause is not None and e.__cause__ is None:
            e.__cause__ = cause  # the ToolError carries the tool's own traceback into the user's code
        return AttemptEnd("failed", error=e, record=e.to_record())
    except asyncio.CancelledError as e:
        return AttemptEnd("released", error=e)
    except Exception as e:
        error = AgentRunError(f"run {run.run_id!r} failed: {type(e).__name__}: {e}")
        error.__cause__ = e
        record = {"type": type(e).__name__, "message": f"{type(e).__name__}: {e}", "traceback": _format(e)}
        return AttemptEnd("failed", error=error, record=record)
    return AttemptEnd("completed", result=result)


def decisions_of(records: Sequence[Record]) -> dict[str, Decision]:
    """Decisions recorded for wait steps (a store that replays them natively)."""
    return {r.key: Decision.model_validate_json(r.result) for r in records if r.result is not None}
