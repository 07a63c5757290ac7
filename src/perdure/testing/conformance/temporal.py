"""The conformance driver of the Temporal adapter (``TemporalAgent`` on a real Temporal server).

Options: ``address``, ``namespace``, ``task_queue`` (one per test, so no worker ever sees another test's
tasks), ``heartbeat_timeout`` and ``workflow_task_timeout`` in seconds (short, so that a SIGKILLed worker is
noticed quickly).

``run`` and ``resume`` run a full worker (workflow and activities) in the child process for as long as they wait.
``approve``, ``cancel`` and ``status`` run a workflow-only worker: the update or query needs workflow code to
answer it, and a step the decision unblocks must not start in a process that is about to exit. Workflows run in
Temporal's sandbox, as in production; the scenarios' instructions function (which reads the environment and
files to block at a crash point) is perdure code, passed through the sandbox like all of perdure; it returns
the same text on every replay, so the workflow stays deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from ...temporal import ActivityOptions, PerdurePlugin, TemporalAgent
from .driver import Driver, outcome_of
from .scenarios import build_agent, prompt_for, usage_limits_for

__all__ = ["TemporalDriver"]


class TemporalDriver(Driver):
    client: Client

    async def setup(self) -> None:
        self.client = await Client.connect(self.options["address"], namespace=self.options.get("namespace", "default"))

    def _agent(self, scenario: str) -> TemporalAgent[Any, Any]:
        heartbeat = timedelta(seconds=float(self.options.get("heartbeat_timeout", 2)))
        return TemporalAgent(
            build_agent(scenario),
            client=self.client,
            task_queue=self.options["task_queue"],
            activity_options=ActivityOptions(
                heartbeat_timeout=heartbeat,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=50),
                    maximum_interval=timedelta(seconds=1),
                    maximum_attempts=5,
                ),
            ),
            workflow_task_timeout=timedelta(seconds=float(self.options.get("workflow_task_timeout", 2))),
        )

    @contextlib.asynccontextmanager
    async def _worker(self, agent: TemporalAgent[Any, Any], *, activities: bool) -> AsyncIterator[None]:
        worker = Worker(
            self.client,
            task_queue=self.options["task_queue"],
            plugins=[PerdurePlugin(agent, activities=activities)],
            # After a SIGKILL, the next workflow task waits this long on the dead worker's sticky queue before
            # it goes to the live worker (default 10 s). (max_cached_workflows=0 would avoid sticky queues, but
            # then the SDK does not turn a replay mismatch into a workflow failure: the run would be stuck.)
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
        )
        async with worker:
            yield

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        async with self._worker(agent, activities=True):
            return await outcome_of(
                agent.run(
                    prompt_for(scenario, run_id),
                    run_id=run_id,
                    usage_limits=usage_limits_for(scenario),
                )
            )

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        async with self._worker(agent, activities=True):
            return await outcome_of(agent.resume(run_id))

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        agent = self._agent(scenario)
        async with self._worker(agent, activities=False):
            await agent.approve(run_id, tool_call_id, approved=approved, note=note)
            return await self._status(agent, run_id)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        async with self._worker(agent, activities=False):
            await agent.cancel(run_id)
            return await self._status(agent, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        agent = self._agent(scenario)
        async with self._worker(agent, activities=False):
            return await self._status(agent, run_id)

    async def _status(self, agent: TemporalAgent[Any, Any], run_id: str) -> dict[str, Any]:
        info = await agent.get_run(run_id)
        return {
            "status": info.status,
            "pending": [p.__dict__ for p in info.pending],
            "usage": info.usage.__dict__,
            "error": info.error,
        }
