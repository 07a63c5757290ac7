"""Telemetry hooks for engines (perdure's adapters, or your own): what an engine calls to be observable.

The loop and the step functions report by themselves; an engine adds the run-level facts only it knows:

* ``accept_trace_context(...)`` when it accepts a run: record the returned carrier with the run. And
  ``run_started(...)`` if the run is new (or let ``run_attempt`` count attempt 1 as the start).
* ``with run_attempt(agent, run_id=..., engine=..., attempt=n, trace_context=recorded) as attempt:`` around
  each attempt's ``drive(...)``; ``perform_model_step``/``perform_tool_step`` called inside it emit the
  ``chat``/``execute_tool`` spans. Set ``attempt.replayed_steps`` and call ``attempt.set_result(result)``.
* ``attempt_context(...)`` where a step executes away from its attempt (a Temporal activity).
* ``run_ended(...)`` when a run ends outside any attempt (a waiting run cancelled).
* ``approval_wait_started(...)`` when a call starts waiting for a human, ``approval_wait_ended(...)`` when the
  decision (or a cancellation) ends the wait.
"""

from ._spans import (
    RunAttempt,
    accept_trace_context,
    approval_wait_ended,
    approval_wait_started,
    attempt_context,
    current_attempt,
    run_attempt,
    run_ended,
    run_started,
)
from ._steps import ModelStepSpan, ToolStepSpan, model_step, tool_step

__all__ = [
    "ModelStepSpan",
    "RunAttempt",
    "ToolStepSpan",
    "accept_trace_context",
    "approval_wait_ended",
    "approval_wait_started",
    "attempt_context",
    "current_attempt",
    "model_step",
    "run_attempt",
    "run_ended",
    "run_started",
    "tool_step",
]
