"""The engine side of the conformance kit: a ``Driver`` runs one operation in a child process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

import pydantic

from ..._exceptions import AgentRunError, PerdureError, RunCancelled, RunWaiting

__all__ = ["Driver", "outcome_of"]

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


async def outcome_of(awaitable: Awaitable[Any]) -> dict[str, Any]:
    """Await a run and describe how it ended, as JSON: status, output, error, pending decisions."""
    try:
        result = await awaitable
    except RunWaiting as e:
        return {"status": "waiting", "pending": e.pending}
    except RunCancelled as e:
        return {"status": "cancelled", "error": {"type": "RunCancelled", "message": str(e)}}
    except (AgentRunError, PerdureError) as e:
        return {"status": "failed", "error": {"type": type(e).__name__, "message": str(e)}}
    output = getattr(result, "output", result)
    usage = result.usage() if hasattr(result, "usage") else None
    return {
        "status": "completed",
        "output": _ANY.dump_python(output, mode="json"),
        "usage": None if usage is None else {**usage.__dict__},
    }


class Driver(ABC):
    """How the conformance suite runs scenarios on one engine. One instance per child process.

    ``options`` come from the test (journal path, database URL, server address...). Each method returns a JSON
    dict: ``{"status": ..., "output": ..., "error": {"type", "message"}, "pending": [...]}``.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    async def setup(self) -> None:
        """Connect, launch, start workers: whatever the engine needs in this process."""

    async def teardown(self) -> None:
        """Release what ``setup`` took."""

    @abstractmethod
    async def run(self, scenario: str, run_id: str) -> dict[str, Any]: ...

    @abstractmethod
    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]: ...

    @abstractmethod
    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]: ...

    @abstractmethod
    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]: ...

    @abstractmethod
    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        """``{"status": ..., "pending": [...], "usage": {...}}`` as the engine reports it."""
