"""``DurableAgent``: durable runs on the embedded SQLite journal."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from typing import TypeVar

from .._agent import Agent
from .._exceptions import AgentRunError, RunInProgress, RunWaiting, UserError
from ..durable.base import DurableAgentBase, check_name
from ._backend import LocalBackend
from ._journal import Durability, Journal

__all__ = ["DurableAgent"]

log = logging.getLogger("perdure.local")

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")

DEFAULT_JOURNAL = "perdure.db"

_JOURNALS: weakref.WeakValueDictionary[tuple[str, str], Journal] = weakref.WeakValueDictionary()


def _open_journal(path: str, durability: Durability) -> Journal:
    key = (os.path.realpath(path), durability)
    journal = _JOURNALS.get(key)
    if journal is None:
        journal = Journal(path, durability=durability)
        _JOURNALS[key] = journal
    return journal


class DurableAgent(DurableAgentBase[DepsT, OutputT]):
    """Durable runs of ``agent`` on an embedded SQLite journal: nothing to install or start.

    ::

        durable = DurableAgent(agent)                       # journal: ./perdure.db or $PERDURE_JOURNAL
        result = await durable.run("Refund order 42", run_id="refund-42")

    Run the same ``run_id`` again and a finished run returns its recorded result; a run whose process died is
    resumed where it stopped, without repeating recorded model requests or tool calls.

    Args:
        agent: the agent; it must have a ``name`` (runs are matched to agents by name).
        journal: the journal file (default ``$PERDURE_JOURNAL`` or ``perdure.db``).
        durability: ``"full"`` (survives power loss; default) or ``"normal"`` (survives process crashes).
        lease_seconds: how long a run stays owned by a process that stopped renewing it (stalled, or on another
            machine and silent); then another process may take it over, and the stalled one is fenced off.
        poll_interval: how often cancellations from other processes and leases are checked.
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        journal: str | os.PathLike[str] | None = None,
        durability: Durability = "full",
        lease_seconds: float = 30.0,
        poll_interval: float = 0.25,
    ) -> None:
        self.name = check_name(agent, None, "DurableAgent", "runs in the journal are matched to their agent by it")
        self.agent = agent
        path = journal if journal is not None else os.environ.get("PERDURE_JOURNAL") or DEFAULT_JOURNAL
        self._journal = _open_journal(os.fspath(path), durability)
        self.journal_path = self._journal.path
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self._backend: LocalBackend = LocalBackend(
            agent,
            self.name,
            self._journal,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            fingerprint=self._fingerprint,
        )

    def __repr__(self) -> str:
        return f"DurableAgent({self.name!r}, journal={str(self.journal_path)!r})"

    async def serve(
        self,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        concurrency: int = 8,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Be a worker: execute started, decided and orphaned runs of this agent until ``stop`` is set."""
        if concurrency < 1:
            raise UserError("concurrency must be at least 1")
        backend = self._backend
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        stop = stop or asyncio.Event()

        async def one(run_id: str) -> None:
            try:
                await backend.resume(run_id, deps, fresh=False)
            except (AgentRunError, RunWaiting, RunInProgress):
                pass  # recorded in the journal (or another process has it)
            except UserError as e:
                log.warning("worker: run %r was not executed: %s", run_id, e)  # e.g. a full disk: say so, retry later
            finally:
                slots.release()

        while not stop.is_set():
            for run_id in backend.orphans():
                if backend.executing(run_id):
                    continue
                await slots.acquire()
                task = asyncio.create_task(one(run_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            except TimeoutError:
                pass
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
