"""``DurableAgentBase``: every public method of a durable agent, written once over an engine's ``Backend``.

``DurableAgent``, ``DBOSAgent``, ``TemporalAgent`` and ``PrefectAgent`` subclass it: they build their backend and
add engine-specific options, and they share the method set, the signatures (async, with ``*_sync`` twins), the
validation of run ids, models and names, the construction of a run's input and the telemetry at acceptance.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._agent import Agent
from .._engine import new_run_id
from .._exceptions import AgentRunError, RunInProgress, RunWaiting, UserError
from .._loop import AgentRunResult, Prompt, RunInput, split_prompt
from ..runs import FINAL_STATUSES, PendingDecision, RunInfo
from .ports import Backend, RunMeta

if TYPE_CHECKING:
    from ..messages import ModelMessage
    from ..models import ModelSettings
    from ..usage import UsageLimits

__all__ = ["DurableAgentBase", "check_run_id", "outside_event_loop"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")
T = TypeVar("T")

MAX_RUN_ID = 200


class RunIdReused(UserWarning):
    """``run()``/``start()`` was given the id of an existing run with a different prompt."""


def _short(text: str | None) -> str:
    return "no prompt" if text is None else repr(text if len(text) <= 60 else text[:57] + "...")


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not run_id or len(run_id) > MAX_RUN_ID:
        raise UserError(f"run_id must be a non-empty string of at most {MAX_RUN_ID} characters, not {run_id!r}")
    return run_id


def check_name(agent: object, name: str | None, cls: str, why: str) -> str:
    if not isinstance(agent, Agent):
        raise UserError(f"{cls} wraps an Agent, not {type(agent).__name__}")
    name = name or agent.name
    if not name:
        raise UserError(f"a durable agent needs a name: {why}. Pass Agent(..., name='support')")
    return name


def outside_event_loop(method: str) -> None:
    """The ``*_sync`` methods start an event loop: inside a running one they cannot (and say what to do instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UserError(f"{method}_sync() cannot be called from a running event loop; use `await durable.{method}(...)`")


def _sync(method: str, coro: Coroutine[Any, Any, T], *, run_id: str | None = None) -> T:
    try:
        outside_event_loop(method)
    except UserError:
        coro.close()
        raise
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt as e:
        if run_id is not None:
            # The attempt gave the run back (nothing recorded as failed): say how to continue it.
            e.add_note(
                f"interrupted: run {run_id!r} is kept and continues where it stopped; resume it with "
                f"durable.resume_sync({run_id!r}) or `perdure runs resume {run_id} --agent module:agent`"
            )
        raise


class DurableAgentBase(Generic[DepsT, OutputT]):
    """What every durable agent offers, whatever its engine.

    Subclasses set ``self.agent``, ``self.name`` and ``self._backend`` in their constructor.
    """

    agent: Agent[DepsT, OutputT]
    name: str
    _backend: Backend

    # --- what the run starts from -------------------------------------------------------------------------

    def _run_input(
        self,
        prompt: Prompt | None,
        run_id: str,
        message_history: Sequence[ModelMessage] | None,
        model: str | None,
        usage_limits: UsageLimits | None,
        model_settings: ModelSettings | None,
    ) -> RunInput:
        if model is not None and not isinstance(model, str):
            raise UserError("a durable run records its model by name: pass a model string, e.g. 'openai:gpt-4.1'")
        text, content = split_prompt(prompt)
        return RunInput(
            prompt=text,
            content=content,
            run_id=check_run_id(run_id),
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
            model_name=model,
        )

    def _meta(self, run_id: str) -> RunMeta:
        return RunMeta(agent=self.name, fingerprint=self._fingerprint())

    def _fingerprint(self) -> str:
        # Hashing the tool schemas costs more than a step; recompute only when the agent's tools change.
        key = (len(self.agent.tools), id(self.agent.output_schema))
        cached: tuple[tuple[int, int], str] | None = getattr(self, "_fp", None)
        if cached is None or cached[0] != key:
            cached = (key, self.agent.fingerprint())
            self._fp = cached
        return cached[1]

    # --- starting runs ---------------------------------------------------------------------------------

    async def run(
        self,
        prompt: Prompt | None = None,
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
        run = self._run_input(prompt, run_id or new_run_id(), message_history, model, usage_limits, model_settings)
        created = await self._backend.accept(run, self._meta(run.run_id), start=True)
        if not created:
            await self._warn_if_reused(run)
        return await self._backend.resume(run.run_id, deps, fresh=created)

    def run_sync(
        self,
        prompt: Prompt | None = None,
        *,
        run_id: str | None = None,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """``run`` for code without an event loop."""
        run_id = run_id or new_run_id()
        return _sync(
            "run",
            self.run(
                prompt,
                run_id=run_id,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            ),
            run_id=run_id,
        )

    async def start(
        self,
        prompt: Prompt | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """Accept a run durably and return its id at once; a worker executes it."""
        run = self._run_input(prompt, run_id or new_run_id(), message_history, model, usage_limits, model_settings)
        if not await self._backend.accept(run, self._meta(run.run_id), start=False):
            await self._warn_if_reused(run)
        return run.run_id

    async def _warn_if_reused(self, run: RunInput) -> None:
        """The run id exists: the recorded run is returned (or continued). Say so when the prompt differs, since
        the caller may have meant a new run."""
        info = await self._backend.admin.get_run(run.run_id)
        if info is not None and info.prompt != run.prompt:
            warnings.warn(
                f"run {run.run_id!r} already exists with another prompt ({_short(info.prompt)}, not "
                f"{_short(run.prompt)}): its recorded run is returned or continued, the new prompt is ignored. "
                "Give the new run its own run_id",
                RunIdReused,
                stacklevel=3,
            )

    def start_sync(
        self,
        prompt: Prompt | None = None,
        *,
        run_id: str | None = None,
        message_history: Sequence[ModelMessage] | None = None,
        model: str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> str:
        """``start`` for code without an event loop."""
        return _sync(
            "start",
            self.start(
                prompt,
                run_id=run_id,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            ),
        )

    # --- continuing runs ------------------------------------------------------------------------------------

    async def resume(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        """Continue a run where it stopped; a finished run returns its recorded result without executing."""
        return await self._backend.resume(check_run_id(run_id), deps, fresh=False)

    def resume_sync(self, run_id: str, *, deps: DepsT = None) -> AgentRunResult[OutputT]:  # type: ignore[assignment]
        """``resume`` for code without an event loop."""
        return _sync("resume", self.resume(run_id, deps=deps), run_id=run_id)

    async def wait(
        self,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        timeout: float | None = None,
    ) -> AgentRunResult[OutputT]:
        """Wait until a run (executed by any process) finishes; its result. Raises its error if it failed."""
        return await self._backend.wait(check_run_id(run_id), deps, timeout)

    def wait_sync(
        self,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        timeout: float | None = None,
    ) -> AgentRunResult[OutputT]:
        """``wait`` for code without an event loop."""
        return _sync("wait", self.wait(run_id, deps=deps, timeout=timeout), run_id=run_id)

    async def recover(self, *, deps: DepsT = None) -> list[str]:  # type: ignore[assignment]
        """Resume every orphaned run of this agent (its process died, or it was started and never picked up).

        Returns their ids once each has finished or is waiting for a decision.
        """
        return await self._backend.recover(deps)

    def recover_sync(self, *, deps: DepsT = None) -> list[str]:  # type: ignore[assignment]
        """``recover`` for code without an event loop."""
        return _sync("recover", self.recover(deps=deps))

    # --- decisions and cancellation -----------------------------------------------------------------------

    async def approve(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        """Decide on a waiting call from any process; the run then continues (``resume`` or a worker)."""
        await self._backend.admin.decide(check_run_id(run_id), tool_call_id, approved=approved, note=note)

    def approve_sync(self, run_id: str, tool_call_id: str, *, approved: bool = True, note: str | None = None) -> None:
        """``approve`` for code without an event loop."""
        _sync("approve", self.approve(run_id, tool_call_id, approved=approved, note=note))

    async def deny(self, run_id: str, tool_call_id: str, *, note: str | None = None) -> None:
        """Deny a waiting call: the model is told so (with ``note``) and the run continues without it."""
        await self.approve(run_id, tool_call_id, approved=False, note=note)

    def deny_sync(self, run_id: str, tool_call_id: str, *, note: str | None = None) -> None:
        """``deny`` for code without an event loop."""
        _sync("deny", self.deny(run_id, tool_call_id, note=note))

    async def cancel(self, run_id: str) -> None:
        """Cancel a run from any process: it stops at its next step boundary (status ``cancelled``)."""
        await self._backend.admin.cancel(check_run_id(run_id))

    def cancel_sync(self, run_id: str) -> None:
        """``cancel`` for code without an event loop."""
        _sync("cancel", self.cancel(run_id))

    # --- inspection -------------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's status, steps (with timings and attempts), usage, error and pending decisions."""
        info = await self._backend.admin.get_run(check_run_id(run_id))
        if info is None:
            raise UserError(f"no run {run_id!r} on the {self._backend.engine} engine ({self!r})")
        return info

    def get_run_sync(self, run_id: str) -> RunInfo:
        """``get_run`` for code without an event loop."""
        return _sync("get_run", self.get_run(run_id))

    async def list_runs(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        """This agent's runs, newest first."""
        statuses = [status] if isinstance(status, str) else status
        return await self._backend.admin.list_runs(agent=self.name, status=statuses, limit=limit)

    def list_runs_sync(self, *, status: str | Sequence[str] | None = None, limit: int = 100) -> list[RunInfo]:
        """``list_runs`` for code without an event loop."""
        return _sync("list_runs", self.list_runs(status=status, limit=limit))


async def poll_until_final(get: Any, run_id: str, timeout: float | None, interval: float, describe: str) -> RunInfo:
    """Poll ``get(run_id)`` until the run is final (a helper for backends that cannot be notified)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        info: RunInfo | None = await get(run_id)
        if info is None:
            raise UserError(f"no run {run_id!r} in {describe}")
        if info.status in FINAL_STATUSES:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id!r} is still {info.status} after {timeout}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, interval)


def waiting_error(run_id: str, pending: Sequence[PendingDecision]) -> RunWaiting:
    return RunWaiting(run_id, [p.__dict__ for p in pending])


async def gather_quietly(run_ids: Sequence[str], resume: Any) -> None:
    """Resume each run; a run's failure, suspension or another process's claim is recorded, not raised."""

    async def one(run_id: str) -> None:
        try:
            await resume(run_id)
        except (AgentRunError, RunWaiting, RunInProgress):
            pass

    await asyncio.gather(*(one(r) for r in run_ids))
