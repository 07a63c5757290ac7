"""The conformance driver of the Prefect adapter (``PrefectAgent`` against a Prefect server).

Options (JSON, from the test): ``env``, Prefect settings for the child process (``PREFECT_API_URL`` of the
server every child talks to, ``PREFECT_HOME``...), and ``results``, the result-storage directory that the
processes of one test share, and ``namespace``, which suffixes the flow's name: tests share one server and
reuse run ids, and run ids are unique per flow. Settings must be in the environment before Prefect is
imported, so the driver imports the adapter lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .driver import Driver, outcome_of
from .scenarios import build_agent, prompt_for, usage_limits_for

if TYPE_CHECKING:
    from ...prefect import PrefectAgent

__all__ = ["PrefectDriver"]


class PrefectDriver(Driver):
    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        os.environ.update(options.get("env", {}))
        # Quiet children: Prefect logs every flow and task run at INFO on stderr, and ships logs to the API.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")

    def _agent(self, scenario: str) -> PrefectAgent[Any, Any]:
        from ...prefect import PrefectAgent, TaskConfig

        agent = build_agent(scenario)
        return PrefectAgent(
            agent,
            name=f"{agent.name}-{self.options['namespace']}",
            task_config=TaskConfig(result_storage=Path(self.options["results"])),
            poll_interval=float(self.options.get("poll_interval", 1.0)),
        )

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        return await outcome_of(
            agent.run(prompt_for(scenario, run_id), run_id=run_id, usage_limits=usage_limits_for(scenario))
        )

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await outcome_of(self._agent(scenario).resume(run_id))

    async def resume_at(self, scenario: str, run_id: str, at: float) -> dict[str, Any]:
        """``resume``, at the wall-clock time ``at``: processes started apart resume one run at the same moment."""
        import asyncio
        import time

        agent = self._agent(scenario)
        await asyncio.sleep(max(0.0, at - time.time()))
        return await outcome_of(agent.resume(run_id))

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        agent = self._agent(scenario)
        await agent.approve(run_id, tool_call_id, approved=approved, note=note)
        return await self._status(agent, run_id)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        await agent.cancel(run_id)
        return await self._status(agent, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await self._status(self._agent(scenario), run_id)

    @staticmethod
    async def _status(agent: PrefectAgent[Any, Any], run_id: str) -> dict[str, Any]:
        info = await agent.get_run(run_id)
        return {
            "status": info.status,
            "pending": [p.__dict__ for p in info.pending],
            "usage": info.usage.__dict__,
            "error": info.error,
        }
