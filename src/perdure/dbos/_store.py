"""``DBOSStore``: the ``StepStore`` of one execution of one run, inside its DBOS workflow.

Each step is a DBOS step named by its step key, whose output is ``{"d": describe, "r": result}`` (``_names``).
DBOS replays natively: it matches a step to its record by position (function id) and name, so ``recorded`` is
empty and every step goes through ``step``/``step_batch``, which hand back the record DBOS returned (checked by
the shared ``StepRunner``). A batch of parallel steps takes its positions in a fixed order, sorted by step key,
before any of them starts: replay is correct whatever order they finish in.

A failed model request is recorded (``{"d", "e"}``) and raised again on replay; an exception raised by a tool
fails its DBOS step, which DBOS records and raises again on replay. A decision is a DBOS message received by the
workflow (``recv``): the run holds no process while it waits, and ``wait`` returns once every decision arrived.
Cancellation and fencing are DBOS's: a cancelled or taken-over workflow raises DBOS's own exception at its next
step, and the ownership watch (``_live``) makes the runner abandon the steps in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from dbos import DBOS
from dbos import error as dbos_error

from .._exceptions import NonDeterminismError, error_from_record
from .._ops import Decision
from ..durable.ports import Body, Done, Record, StepCall, WaitCall
from ..durable.runner import unknown_outcome
from ._codec import error_record
from ._live import LIVE
from ._names import DESCRIBE, ERROR, PENDING, RESULT, STARTED_SUFFIX, STATUS_EVENT, started_step

__all__ = ["DBOSStore", "outside_workflow"]

# A wait for a decision is one DBOS.recv of at most this long, repeated: a run may wait for days.
_RECV_SECONDS = 24 * 3600.0
# After a recovery replays a wait, how long recv may take to find an already-sent decision before the run is
# reported as waiting to callers in this process.
_REPLAY_GRACE = 0.2


def outside_workflow(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run a DBOS call as a plain call even from workflow code (so DBOS records it as no step of the run)."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())  # type: ignore[arg-type]


class DBOSStore:
    """The steps of one execution of one run, as DBOS steps of its workflow."""

    def __init__(self, run_id: str, *, agent_name: str, model_options: Mapping[str, Any]) -> None:
        self.run_id = run_id
        self.agent_name = agent_name
        self.model_options = dict(model_options)

    # --- the StepStore port ---------------------------------------------------------------------------------

    @property
    def recorded(self) -> Mapping[str, Record]:
        return {}

    def cancel_requested(self) -> bool:
        return False  # DBOS stops a cancelled workflow at its next step (DBOSWorkflowCancelledError)

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        return await self._step(call, body, interrupted, None)

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        slots: dict[int, list[Any]] = {}
        for i in sorted(range(len(calls)), key=lambda i: calls[i].key):
            slots[i] = [DBOS.reserve_step() for _ in range(2 if calls[i].at_most_once else 1)]
        tasks = [
            # An at-most-once call an earlier execution started and never finished records an unknown outcome.
            asyncio.ensure_future(self._step(call, body, unknown_outcome if call.at_most_once else body, slots[i]))
            for i, (call, body) in enumerate(zip(calls, bodies, strict=True))
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            # One call's failure ends the attempt: the others stop (a DBOS step in flight is not recorded).
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
        return [t.result() for t in tasks]

    async def wait(self, calls: Sequence[WaitCall]) -> Mapping[str, Decision]:
        """Record the waits, publish them as pending, then receive one decision per wait, in order."""
        from ..observability._spans import approval_wait_started

        ordered = sorted(calls, key=lambda w: w.tool_call_id)
        pending: list[dict[str, Any]] = []
        fresh = False
        for w in ordered:
            payload = {
                "run_id": self.run_id,
                "tool_call_id": w.tool_call_id,
                "tool_name": w.tool_name,
                "args": w.args,
                "reason": w.reason,
                "key": w.key,
            }

            async def mark(payload: dict[str, Any] = payload, describe: str = w.describe) -> dict[str, Any]:
                nonlocal fresh
                fresh = True
                return {DESCRIBE: describe, PENDING: {**payload, "since": time.time()}}

            recorded = await self._run_step(w.key, w.describe, mark, None)
            self._check(w.key, w.describe, recorded)
            pending.append(recorded[PENDING])
            if fresh:
                approval_wait_started(agent_name=self.agent_name, engine="dbos")
        await DBOS.set_event_async(STATUS_EVENT, {"status": "waiting", "pending": list(pending)})
        if fresh:
            LIVE.publish_waiting(self.run_id, pending)
        decisions: dict[str, Decision] = {}
        for w in ordered:
            receive = asyncio.ensure_future(self._receive(w.key))
            if not fresh:
                # A recovery replayed this wait: the decision may have been sent meanwhile.
                await asyncio.wait({receive}, timeout=_REPLAY_GRACE)
                if not receive.done():
                    LIVE.publish_waiting(self.run_id, pending)
            decisions[w.key] = Decision.model_validate(await receive)
            pending = [p for p in pending if p["key"] != w.key]
            await DBOS.set_event_async(
                STATUS_EVENT, {"status": "waiting" if pending else "running", "pending": pending}
            )
            LIVE.publish_waiting(self.run_id, pending)
        return decisions

    # --- steps --------------------------------------------------------------------------------------------

    async def _step(self, call: StepCall, body: Body, interrupted: Body | None, slots: list[Any] | None) -> Record:
        if call.at_most_once:
            marked_now = False

            async def mark() -> dict[str, Any]:
                nonlocal marked_now
                marked_now = True
                return {DESCRIBE: call.describe}

            recorded = await self._run_step(started_step(call.key), call.describe, mark, slots[0] if slots else None)
            self._check(call.key, call.describe, recorded)
            if not marked_now:
                # Started by an execution that ended before recording the result: never run it again.
                body = interrupted or body
        return await self._record(call, body, slots[-1] if slots else None)

    async def _record(self, call: StepCall, body: Body, slot: Any) -> Record:
        fresh: list[Done | Exception] = []

        async def run() -> dict[str, Any]:
            try:
                done = await body()
            except Exception as e:
                if call.kind != "model":
                    raise  # a tool's exception fails its DBOS step (recorded by DBOS, raised again on replay)
                fresh.append(e)  # a failed request is recorded too: replay fails the same way
                return {DESCRIBE: call.describe, ERROR: error_record(e)}
            fresh.append(done)
            return {DESCRIBE: call.describe, RESULT: done.result}

        options = self.model_options if call.kind == "model" else None
        recorded = await self._run_step(call.key, call.describe, run, slot, options)
        if fresh:
            outcome = fresh[0]
            if isinstance(outcome, Exception):
                raise outcome
            return Record(call.key, call.kind, call.describe, "done", outcome.result, call.attempt)
        describe = str(recorded.get(DESCRIBE))
        if ERROR in recorded:
            self._check(call.key, call.describe, recorded)
            raise error_from_record(recorded[ERROR])
        # Replayed: attempt 0 tells the runner it was not executed by this attempt; it checks the description.
        return Record(call.key, call.kind, describe, "done", recorded.get(RESULT), 0)

    async def _run_step(
        self,
        name: str,
        describe: str,
        fn: Any,
        slot: Any,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        opts = {**(options or {}), "name": name}
        try:
            if slot:
                recorded: dict[str, Any] = await slot.run_async(opts, fn)
            else:
                recorded = await DBOS.run_step_async(opts, fn)  # type: ignore[arg-type]
        except dbos_error.DBOSUnexpectedStepError as e:
            raise await self._diverged(name, describe, e) from None
        return recorded

    def _check(self, key: str, describe: str, recorded: Mapping[str, Any]) -> None:
        if recorded.get(DESCRIBE) != describe:
            raise NonDeterminismError(
                run_id=self.run_id, step_key=key, recorded=str(recorded.get(DESCRIBE)), requested=describe
            )

    async def _diverged(self, name: str, describe: str, e: Any) -> NonDeterminismError:
        """The run recorded another step at this position: the agent's code now takes another path."""
        _, step_id, _, recorded_name = e.inputs
        recorded = f"the step {recorded_name!r}"
        try:
            steps = await outside_workflow(DBOS.list_workflow_steps_async(self.run_id))
            for s in steps:
                if s["function_id"] == step_id and isinstance(s["output"], dict) and s["output"].get(DESCRIBE):
                    recorded = str(s["output"][DESCRIBE])
        except Exception:
            pass  # the message names the recorded step either way
        key = str(recorded_name) if str(recorded_name).startswith("turn/") else name
        if key.endswith(STARTED_SUFFIX):
            key = key[: -len(STARTED_SUFFIX)]
        return NonDeterminismError(run_id=self.run_id, step_key=key, recorded=recorded, requested=describe)

    async def _receive(self, topic: str) -> Any:
        while True:
            message = await DBOS.recv_async(topic, timeout_seconds=_RECV_SECONDS)
            if message is not None:
                return message
