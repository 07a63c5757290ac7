"""An agent whose tool can stall its worker, and that worker as a process (``python -m tests.temporal._stall``).

The tool is an ``async def`` that, in the process named ``stalling`` (``PERDURE_STALL_WORKER``), blocks on a
synchronous wait until the test creates a ``release`` file: the worker's event loop stops, so it stops
heartbeating, exactly as with a blocking call inside an async tool, a long GC pause or a frozen VM. Every
execution is appended to ``effects`` in ``PERDURE_STALL_DIR``. Imports nothing but temporalio and perdure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal

from temporalio.common import RetryPolicy

from perdure import Agent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel
from perdure.temporal import ActivityOptions, TemporalAgent

HEARTBEAT = timedelta(seconds=1)


def stall_agent(
    name: str, tools_queue: str, side_effects: Literal["at_least_once", "at_most_once"], **options: object
) -> TemporalAgent[None, str]:
    """One tool call on ``tools_queue`` (heartbeat timeout of a second), then the tool's answer as the output."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=[ToolCallPart(tool_name="fetch", args={}, tool_call_id="s1")])
        return ModelResponse(parts=[TextPart(content=str(returns[0].content))])

    agent: Agent[None, str] = Agent(FunctionModel(answer, model_name="stall"), name=name)

    @agent.tool(side_effects=side_effects)
    async def fetch(ctx: RunContext[None]) -> str:
        """Fetch something slowly."""
        who = os.environ.get("PERDURE_STALL_WORKER", "retry")
        workdir = Path(os.environ["PERDURE_STALL_DIR"])
        with open(workdir / "effects", "a") as f:  # noqa: ASYNC230 - a line, at once
            f.write(f"{who}\n")
        if who == "stalling":
            (workdir / "stalled").write_text("1")
            while not (workdir / "release").exists():
                time.sleep(0.01)  # noqa: ASYNC251 - the point: the event loop stops, no heartbeat leaves
            (workdir / "returned").write_text("1")
        return f"fetched by {who}"

    tool_options = ActivityOptions(
        task_queue=tools_queue,
        heartbeat_timeout=HEARTBEAT,
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3),
    )
    return TemporalAgent(agent, tool_activity_options={"fetch": tool_options}, **options)  # type: ignore[arg-type]


async def serve(address: str, name: str, tools_queue: str, side_effects: str) -> None:
    """An activity-only worker on ``tools_queue`` that runs one activity at a time, until SIGTERM."""
    from temporalio.client import Client
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig
    from temporalio.worker import Worker

    from perdure.temporal import PerdurePlugin

    agent = stall_agent(name, tools_queue, side_effects)  # type: ignore[arg-type]
    # The SDK core's warnings (a completion the server rejects, say) go to stderr: the test reads them.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    forwarding = LogForwardingConfig(logger=logging.getLogger("temporal-core"))
    runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter="WARN", forwarding=forwarding)))
    client = await Client.connect(address, runtime=runtime)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # One slot: while its activity runs, this worker polls for no other (the retry goes to another worker).
    worker = Worker(
        client,
        task_queue=tools_queue,
        plugins=[PerdurePlugin(agent, workflows=False)],
        max_concurrent_activities=1,
        identity="stalling-worker",
        graceful_shutdown_timeout=timedelta(seconds=30),
    )
    async with worker:
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:5]))
    print("stopped", flush=True)  # the worker has shut down: every completion it made was reported
    sys.stderr.flush()
    os._exit(0)  # finalizing the SDK with log forwarding on can abort the interpreter (temporalio/sdk-python#300)
