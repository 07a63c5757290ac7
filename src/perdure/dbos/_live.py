"""The runs this process knows about: executing here (and still owned), and/or watched by ``run()`` callers here.

``run()`` callers in this process learn at once that a run executing here waits for a decision; for a run
executing elsewhere they poll its status event.

Fencing. DBOS fences every write of an execution that no longer owns its workflow (its ownership token changed:
recovery re-enqueued the workflow and another execution dequeued it). A stale execution learns it at its next
write, which may be the end of a long tool call. So each execution here is also watched: every ``interval``
seconds one status query for all of them; a run that went back to the queue, or was dequeued again since this
execution began, belongs to another execution, and this one stops at once: its in-flight steps are cancelled and
it starts no further step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LIVE", "Live", "LiveRuns"]

log = logging.getLogger("perdure.dbos")


@dataclass
class Live:
    executing: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    watchers: list[asyncio.Future[list[dict[str, Any]]]] = field(default_factory=list)
    dequeued_at: int | None = None
    """When the execution here was dequeued (None: started directly): another dequeue means another owner."""
    on_lost: Callable[[str], None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    ended: asyncio.Future[None] | None = None
    """Resolved when the execution here ends: a newer execution of the run in this process waits for it."""


def _resolve(future: asyncio.Future[list[dict[str, Any]]], pending: list[dict[str, Any]]) -> None:
    if not future.done():
        future.set_result(pending)


class LiveRuns:
    def __init__(self) -> None:
        self._runs: dict[str, Live] = {}
        self._lock = threading.Lock()
        self._watch: asyncio.Task[None] | None = None

    # --- executions -------------------------------------------------------------------------------------------

    def begin(
        self, run_id: str, dequeued_at: int | None, on_lost: Callable[[str], None]
    ) -> tuple[asyncio.Future[None], asyncio.Future[None] | None]:
        """Register an execution here: its token (pass it to ``end``), and the execution of the same run that
        it replaces in this process, if any (stopped now: DBOS dequeued the run again, so it lost the run)."""
        loop = asyncio.get_running_loop()
        token: asyncio.Future[None] = loop.create_future()
        with self._lock:
            live = self._runs.setdefault(run_id, Live())
            previous = live.ended if live.executing and live.loop is loop else None
            stale = live.on_lost if live.executing else None
            stale_loop = live.loop
            live.executing = True
            live.dequeued_at = dequeued_at
            live.on_lost = on_lost
            live.loop = loop
            live.ended = token
        if stale is not None and stale_loop is not None and not stale_loop.is_closed():
            log.warning("run %r: DBOS handed the run to a new execution in this process; the old one stops", run_id)
            stale_loop.call_soon_threadsafe(stale, run_id)
        return token, previous

    def end(self, run_id: str, token: asyncio.Future[None]) -> None:
        if not token.done():
            token.set_result(None)
        with self._lock:
            live = self._runs.get(run_id)
            if live is None or live.ended is not token:
                return  # a newer execution of the run owns the entry
            live.executing = False
            live.pending = []
            live.on_lost = None
            if not live.watchers:
                del self._runs[run_id]

    def executing(self, run_id: str) -> bool:
        with self._lock:
            live = self._runs.get(run_id)
            return live is not None and live.executing

    def executing_ids(self) -> list[str]:
        with self._lock:
            return [r for r, live in self._runs.items() if live.executing and live.on_lost is not None]

    # --- waiting ------------------------------------------------------------------------------------------

    def publish_waiting(self, run_id: str, pending: list[dict[str, Any]]) -> None:
        with self._lock:
            live = self._runs.get(run_id)
            if live is None:
                return
            live.pending = list(pending)
            watchers = list(live.watchers) if pending else []
        for future in watchers:
            future.get_loop().call_soon_threadsafe(_resolve, future, list(pending))

    def watch(self, run_id: str, future: asyncio.Future[list[dict[str, Any]]]) -> None:
        with self._lock:
            live = self._runs.setdefault(run_id, Live())
            live.watchers.append(future)
            if live.pending:
                future.set_result(list(live.pending))

    def unwatch(self, run_id: str, future: asyncio.Future[list[dict[str, Any]]]) -> None:
        with self._lock:
            live = self._runs.get(run_id)
            if live is not None:
                live.watchers = [w for w in live.watchers if w is not future]
                if not live.watchers and not live.executing:
                    del self._runs[run_id]

    # --- fencing ------------------------------------------------------------------------------------------

    def check_owners(self, statuses: dict[str, Any]) -> None:
        """Given the current DBOS status of the runs executing here, stop those another execution took over."""
        lost: list[tuple[Live, str, str]] = []
        with self._lock:
            for run_id, status in statuses.items():
                live = self._runs.get(run_id)
                if live is None or not live.executing or live.on_lost is None:
                    continue
                state = str(getattr(status, "status", ""))
                dequeued = getattr(status, "dequeued_at", None)
                if state in ("ENQUEUED", "DELAYED") or (
                    state == "PENDING" and dequeued is not None and dequeued != live.dequeued_at
                ):
                    executor = str(getattr(status, "executor_id", None) or "another executor")
                    lost.append((live, run_id, executor))
        for live, run_id, executor in lost:
            log.warning(
                "run %r: this execution no longer owns the run (DBOS recovery handed it to %s); "
                "it stops at once and records nothing more",
                run_id,
                executor,
            )
            callback, loop = live.on_lost, live.loop
            live.on_lost = None
            if callback is not None and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(callback, run_id)


LIVE = LiveRuns()
