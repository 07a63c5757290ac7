"""Telemetry hooks for engines (perdure's adapters, or your own): what an engine calls to be observable.

The loop and the step functions report by themselves; an engine adds the run-level facts only it knows:

* ``accept_trace_context(...)`` when it accepts a run: record the returned carrier with the run. And
  ``run_started(...)`` if the run is new (or let ``run_attempt`` count attempt 1 as the start).
  ``accept_run(...)`` when it learns only afterwards whether the run is new: ``.trace_context`` to record,
  ``.commit()`` if it was (a duplicate submission then reports no ``accept_run`` span).
* ``with run_attempt(agent, run_id=..., engine=..., attempt=n, trace_context=recorded) as attempt:`` around
  each attempt's ``drive(...)``; ``perform_model_step``/``perform_tool_step`` called inside it emit the
  ``chat``/``execute_tool`` spans. Set ``attempt.replayed_steps`` and call ``attempt.set_result(result)``.
* ``start_attempt(...)`` / ``attempt.end(status)`` where an attempt does not fit a ``with`` block (Temporal
  workflow code).
* ``attempt_context(...)`` where a step executes away from its attempt (a Temporal activity).
* ``run_ended(...)`` when a run ends outside any attempt (a waiting run cancelled).
* ``approval_wait_started(...)`` when a call starts waiting for a human, ``approval_wait_ended(...)`` when the
  decision (or a cancellation) ends the wait.
"""

from ._spans import (
    Acceptance,
    RunAttempt,
    accept_run,
    accept_trace_context,
    approval_wait_ended,
    approval_wait_started,
    attempt_context,
    current_attempt,
    run_attempt,
    run_ended,
    run_started,
    start_attempt,
)
from ._steps import ModelStepSpan, ToolStepSpan, model_step, tool_step

__all__ = [
    "Acceptance",
    "ModelStepSpan",
    "RunAttempt",
    "ToolStepSpan",
    "accept_run",
    "accept_trace_context",
    "approval_wait_ended",
    "approval_wait_started",
    "attempt_context",
    "current_attempt",
    "model_step",
    "run_attempt",
    "run_ended",
    "run_started",
    "start_attempt",
    "tool_step",
]
