"""``perdure worker``: how a durable agent of each engine is served, through the engines' public APIs.

The embedded engine's ``DurableAgent.serve`` and Prefect's ``PrefectAgent.serve`` poll for runs to execute; a
Temporal worker registers the agent's workflow and activities (``PerdurePlugin``) on its task queue; a DBOS worker
is a process with DBOS launched (its recovery and queues hand it the runs). Each serves until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from .._exceptions import UserError

__all__ = ["engine_of", "executing", "serve"]


def _instance(obj: Any, module: str, cls: str) -> bool:
    # The engine's module is loaded already when the user's module built such an agent: never import one here.
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, getattr(loaded, cls))


def engine_of(durable: Any) -> str:
    for engine, module, cls in (
        ("embedded", "perdure.local", "DurableAgent"),
        ("dbos", "perdure.dbos", "DBOSAgent"),
        ("temporal", "perdure.temporal", "TemporalAgent"),
        ("prefect", "perdure.prefect", "PrefectAgent"),
    ):
        if _instance(durable, module, cls):
            return engine
    return "other"


async def serve(durable: Any, *, concurrency: int) -> None:
    engine = engine_of(durable)
    if engine == "embedded":
        await durable.serve(concurrency=concurrency)
    elif engine == "prefect":
        await durable.serve()
    elif engine == "temporal":
        await _temporal(durable, concurrency)
    elif engine == "dbos":
        async with executing(durable):
            await asyncio.Event().wait()
    else:
        raise UserError(f"perdure worker does not know how to serve a {type(durable).__name__}")


@contextlib.asynccontextmanager
async def executing(durable: Any) -> AsyncIterator[None]:
    """What this process needs to execute (or await) the agent's runs: DBOS launched, for a DBOSAgent (its recovery
    then also resumes here the other pending runs of this executor, as in any process that launches DBOS)."""
    if engine_of(durable) != "dbos":
        yield
        return
    from dbos import DBOS

    try:
        DBOS.launch()  # the application module configured DBOS (DBOS(config=...)) when it built the agent
    except Exception as e:
        raise UserError(
            f"cannot launch DBOS ({type(e).__name__}: {e}); the module that defines the DBOSAgent must configure "
            'DBOS first: DBOS(config={"name": ..., "system_database_url": ...})'
        ) from e
    try:
        yield
    finally:
        DBOS.destroy()


async def _temporal(durable: Any, concurrency: int) -> None:
    from temporalio.worker import Worker

    from ..temporal import PerdurePlugin

    if durable.client is None:
        await durable.list_runs(limit=1)  # connects the agent's client (an address given to its constructor)
    worker = Worker(
        durable.client,
        task_queue=durable.task_queue,
        plugins=[PerdurePlugin(durable)],
        max_concurrent_activities=concurrency,
    )
    async with worker:
        await asyncio.Event().wait()
