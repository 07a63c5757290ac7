"""The conformance driver of the embedded engine (``DurableAgent`` on a SQLite journal)."""

from __future__ import annotations

from typing import Any

from ...local import DurableAgent
from .driver import Driver, outcome_of
from .scenarios import build_agent, prompt_for, usage_limits_for

__all__ = ["LocalDriver"]


class LocalDriver(Driver):
    def _durable(self, scenario: str) -> DurableAgent[Any, Any]:
        return DurableAgent(build_agent(scenario), journal=self.options["journal"], poll_interval=0.05)

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        durable = self._durable(scenario)
        return await outcome_of(
            durable.run(prompt_for(scenario, run_id), run_id=run_id, usage_limits=usage_limits_for(scenario))
        )

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await outcome_of(self._durable(scenario).resume(run_id))

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        await self._durable(scenario).approve(run_id, tool_call_id, approved=approved, note=note)
        return await self.status(scenario, run_id)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        await self._durable(scenario).cancel(run_id)
        return await self.status(scenario, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        info = await self._durable(scenario).get_run(run_id)
        return {
            "status": info.status,
            "pending": [p.__dict__ for p in info.pending],
            "usage": info.usage.__dict__,
            "error": info.error,
        }
