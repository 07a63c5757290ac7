"""A process of the fencing tests: ``python -m tests.dbos.fence_child URL EXECUTOR WORKDIR [RECOVER_EXECUTOR]``.

It launches DBOS with executor id ``EXECUTOR`` (recovering that executor's pending runs, as DBOS does at launch),
optionally recovers the pending runs of ``RECOVER_EXECUTOR`` too (what DBOS Conductor or the admin API does for
an executor declared dead), then runs or awaits the run ``fence-1`` and prints its output.

The run's one tool call appends ``begin <pid>`` to WORKDIR/effects, creates WORKDIR/holding-<pid>, waits until
WORKDIR/release exists, and appends ``end <pid>`` (``stop <pid>`` if it was abandoned).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from dbos import DBOS
from perdure import Agent, RunContext
from perdure.dbos import DBOSAgent
from perdure.messages import ModelMessage, ModelResponse, TextPart
from perdure.models.function import AgentInfo, FunctionModel

from .agents import call, returns, turn


def note(workdir: Path, line: str) -> None:
    fd = os.open(workdir / "effects", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def build(workdir: Path) -> Agent[Any, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if turn(messages) == 1:
            return ModelResponse(parts=[call("hold", "h1")])
        return ModelResponse(parts=[TextPart(content=f"done: {returns(messages)}")])

    agent: Agent[Any, str] = Agent(FunctionModel(script, model_name="scripted"), name="fenced")

    @agent.tool
    async def hold(ctx: RunContext[Any]) -> str:
        """Hold until released."""
        note(workdir, "begin")
        (workdir / f"holding-{os.getpid()}").write_text("1")
        try:
            while not (workdir / "release").exists():  # noqa: ASYNC110 - released by another process
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            note(workdir, "stop")
            raise
        note(workdir, "end")
        return "held"

    return agent


async def main(url: str, executor: str, workdir: Path, recover: str | None) -> None:
    DBOS(
        config={
            "name": "perdure-fencing",
            "system_database_url": url,
            "application_version": "fencing",
            "executor_id": executor,
            "log_level": "ERROR",
            "notification_listener_polling_interval_sec": 0.02,
            "scheduler_polling_interval_sec": 0.05,
        }
    )
    from perdure.testing.conformance.dbos import _poll_recovery_queue_often

    _poll_recovery_queue_often()
    dbos_agent = DBOSAgent(build(workdir), poll_interval=0.05)
    DBOS.launch()
    try:
        if recover:
            DBOS._recover_pending_workflows([recover])
        if (workdir / "started").exists():
            result = await asyncio.wait_for(dbos_agent.wait("fence-1"), 60)
        else:
            (workdir / "started").write_text("1")
            result = await dbos_agent.run("hold it", run_id="fence-1")
        print(result.output, flush=True)
    finally:
        DBOS.destroy(destroy_registry=True)


if __name__ == "__main__":
    url, executor, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    asyncio.run(main(url, executor, workdir, sys.argv[4] if len(sys.argv) > 4 else None))
