"""The caller's side of the Temporal engine: ``TemporalBackend`` starts a run's workflow (accepted = durable) and
reads its outcome; the workers execute it (``_workflow`` and ``_activities``)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as WorkflowTimeoutError  # not the builtin TimeoutError

from .._exceptions import AgentRunError, NonDeterminismError, RunCancelled, RunWaiting, error_from_record
from .._loop import AgentRunResult, RunInput
from ..durable.base import gather_quietly
from ..durable.codec import output_adapter
from ..durable.ports import RunMeta
from ..observability._spans import accept_run, run_started
from ._admin import TemporalAdmin, describe_run, list_run_infos
from ._names import ENGINE, MEMO_AGENT, MEMO_FINGERPRINT, MEMO_PENDING, MEMO_PROMPT
from ._options import AgentConfig
from ._wire import RunOutput, WorkflowInput, decode_output, encode_deps

__all__ = ["TemporalBackend"]


class TemporalBackend:
    """Runs of one agent's built-in workflow: started here, executed by workers."""

    engine = ENGINE

    def __init__(
        self,
        config: AgentConfig,
        admin: TemporalAdmin,
        *,
        task_queue: str,
        workflow_task_timeout: timedelta | None,
    ) -> None:
        self.config = config
        self.admin = admin
        self.task_queue = task_queue
        self.workflow_task_timeout = workflow_task_timeout
        self._adapter = output_adapter(config.agent.output_type)

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        """Start the run's workflow (workers execute it, whatever ``start`` says: Temporal has no pending runs)."""
        return await self.submit(run, meta, deps=None)

    async def submit(self, run: RunInput, meta: RunMeta, *, deps: Any, task_queue: str | None = None) -> bool:
        """Start the run's workflow with ``deps`` in its input; False if a workflow with that id exists (it must be
        a run of this agent: it continues, or keeps its recorded result)."""
        self.config.model_name(run.model_name)  # no model at all: say so now, not in a worker
        acceptance = accept_run(agent_name=meta.agent, run_id=run.run_id, engine=ENGINE)  # the run's trace
        inp = WorkflowInput(
            agent=meta.agent,
            run_id=run.run_id,
            prompt=run.prompt,
            content=run.content,
            message_history=list(run.message_history),
            usage_limits=run.usage_limits,
            model_settings=run.model_settings,
            model=run.model_name,
            deps=encode_deps(self.config.agent, deps),
            fingerprint=meta.fingerprint,
            trace_context=acceptance.trace_context,
        )
        memo: dict[str, Any] = {MEMO_AGENT: meta.agent, MEMO_FINGERPRINT: meta.fingerprint}
        if run.prompt is not None:
            memo[MEMO_PROMPT] = run.prompt[:200]
        client = await self.admin.client()
        try:
            await client.start_workflow(
                self.config.workflow_name,
                inp.dump(),
                id=run.run_id,
                task_queue=task_queue or self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                task_timeout=self.workflow_task_timeout,
                memo=memo,
            )
        except WorkflowAlreadyStartedError:
            await describe_run(client, run.run_id, self.config.workflow_name)  # it must be a run of this agent
            return False
        acceptance.commit()  # accepted: a duplicate submission reports nothing
        run_started(agent_name=meta.agent, engine=ENGINE)
        return True

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        """Wait for the run's outcome (workers execute it); ``RunWaiting`` while it waits for a decision."""
        client = await self.admin.client()
        await describe_run(client, run_id, self.config.workflow_name)
        handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(run_id)
        result_task = asyncio.ensure_future(handle.result())
        delay = 0.02
        try:
            while True:
                done, _ = await asyncio.wait({result_task}, timeout=delay)
                if done:
                    raw = result_task.result()
                    break
                pending = await _memo_pending(handle, run_id)
                if pending:
                    raise RunWaiting(run_id, pending)
                delay = min(delay * 1.5, 1.0)
        except WorkflowFailureError as e:
            raise _run_error(e, run_id) from None
        finally:
            result_task.cancel()
        return self._result(run_id, raw)

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        """Wait until the run ends (through any waits for decisions); its result, or its error raised."""
        client = await self.admin.client()
        await describe_run(client, run_id, self.config.workflow_name)
        try:
            raw = await asyncio.wait_for(client.get_workflow_handle(run_id).result(), timeout)
        except WorkflowFailureError as e:
            raise _run_error(e, run_id) from None
        except TimeoutError:
            raise TimeoutError(f"run {run_id!r} has not ended after {timeout}s") from None
        return self._result(run_id, raw)

    async def recover(self, deps: Any) -> list[str]:
        """Temporal's workers pick up the runs of dead workers by themselves: wait until this agent's running runs
        have ended or wait for a decision (needs a worker), and return their ids."""
        runs = await list_run_infos(
            await self.admin.client(), status="running", workflow_name=self.config.workflow_name
        )
        ids = [r.run_id for r in runs]
        await gather_quietly(ids, lambda run_id: self.resume(run_id, deps, fresh=False))
        return ids

    def _result(self, run_id: str, raw: Any) -> AgentRunResult[Any]:
        out = RunOutput.model_validate(raw)
        return AgentRunResult(decode_output(self._adapter, out.output), run_id, out.messages, out.new_from, out.usage)


async def _memo_pending(handle: WorkflowHandle[Any, Any], run_id: str) -> list[dict[str, Any]]:
    desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return []
    memo = await desc.memo()
    return [p for p in memo.get(MEMO_PENDING) or [] if p.get("run_id") == run_id]


_TEMPORAL_NONDETERMINISM = "[TMPRL1100]"
_ACTIVITY_ID_MISMATCH = re.compile(
    r"Activity id of scheduled event '(?P<recorded>.+?)' does not match activity id of activity command "
    r"'(?P<requested>.+)'"
)


def _nondeterminism(message: str, run_id: str) -> Exception:
    """Temporal's replay check failed the run. Activity ids are ``<step key>: <step>``: name both sides."""
    match = _ACTIVITY_ID_MISMATCH.search(message)
    if match:
        key, _, recorded = match["recorded"].partition(": ")
        _, _, requested = match["requested"].partition(": ")
        return NonDeterminismError(run_id=run_id, step_key=key, recorded=recorded, requested=requested)
    return error_from_record({"type": "NonDeterminismError", "message": f"run {run_id!r} no longer replays: {message}"})


def _run_error(e: WorkflowFailureError, run_id: str) -> Exception:
    """The run's own error, rebuilt from the workflow failure."""
    cause = e.cause
    if isinstance(cause, CancelledError):
        return RunCancelled(f"run {run_id!r} was cancelled")
    if isinstance(cause, ApplicationError):
        if cause.details and isinstance(cause.details[0], dict) and "type" in cause.details[0]:
            return error_from_record(cause.details[0])
        if cause.message.startswith(_TEMPORAL_NONDETERMINISM):
            return _nondeterminism(cause.message, run_id)
        return AgentRunError(f"run {run_id!r} failed: {cause.message}")
    if isinstance(cause, TerminatedError):
        return AgentRunError(f"run {run_id!r} was terminated: {cause.message}")
    if isinstance(cause, WorkflowTimeoutError):
        return AgentRunError(f"run {run_id!r} timed out: {cause.message}")
    return AgentRunError(f"run {run_id!r} failed: {cause or e}")
