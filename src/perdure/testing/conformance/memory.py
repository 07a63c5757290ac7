"""The conformance driver of ``MemoryAgent``: the reference engine, its runs in one JSON file across processes."""

from __future__ import annotations

from typing import Any

from ...durable.memory import MemoryAgent, MemoryRuns
from .driver import Driver, outcome_of
from .scenarios import build_agent, prompt_for, usage_limits_for

__all__ = ["MemoryDriver"]


class MemoryDriver(Driver):
    def _agent(self, scenario: str) -> MemoryAgent[Any, Any]:
        return MemoryAgent(build_agent(scenario), runs=MemoryRuns(self.options["path"]))

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        return await outcome_of(
            agent.run(prompt_for(scenario, run_id), run_id=run_id, usage_limits=usage_limits_for(scenario))
        )

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await outcome_of(self._agent(scenario).resume(run_id))

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        await self._agent(scenario).approve(run_id, tool_call_id, approved=approved, note=note)
        return await self.status(scenario, run_id)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        await self._agent(scenario).cancel(run_id)
        return await self.status(scenario, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        info = await self._agent(scenario).get_run(run_id)
        return {
            "status": info.status,
            "pending": [p.__dict__ for p in info.pending],
            "usage": info.usage.__dict__,
            "error": info.error,
        }
