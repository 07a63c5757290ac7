"""Shared benchmark helpers: the workload, timing with medians, and the results file."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from perdure import Agent
from perdure.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from perdure.models.function import AgentInfo, FunctionModel

TOOL_CALLS = 5  # per run: 5 tool calls + 6 model requests = 11 durable steps
STEPS_PER_RUN = 2 * TOOL_CALLS + 1


def five_tool_script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The workload of DESIGN section 8: one tool call per turn, five times, then a text answer."""
    turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
    if turn <= TOOL_CALLS:
        return ModelResponse(parts=[ToolCallPart(tool_name="add", args={"a": turn, "b": 1}, tool_call_id=f"c{turn}")])
    return ModelResponse(parts=[TextPart(content="done")])


def n_turn_script(turns: int) -> Callable[[list[ModelMessage], AgentInfo], ModelResponse]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
        if turn <= turns:
            return ModelResponse(
                parts=[ToolCallPart(tool_name="add", args={"a": turn, "b": 1}, tool_call_id=f"c{turn}")]
            )
        return ModelResponse(parts=[TextPart(content="done")])

    return script


def workload_agent(name: str = "bench", script: Any = five_tool_script) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(script, model_name="bench-fn"), name=name)

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    disk = ""
    try:
        disk = subprocess.run(["df", "-h", "/tmp"], capture_output=True, text=True).stdout.splitlines()[-1].split()[0]
    except Exception:
        pass
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, temp dir on {disk or '?'}"
    )


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ms(x: float) -> str:
    return f"{x * 1000:.3f} ms"
