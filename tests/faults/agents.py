"""Agents of the fault suite, and the log their side effects go to.

Worker processes import this module (``tests.faults.agents``), so a run started in one process is resumed in another
from the same definitions. Every executed tool call appends a ``start`` and an ``end`` line to the file named by
``FAULTS_LOG``, with the process id, a ``time.monotonic()`` stamp (CLOCK_MONOTONIC: comparable across the
processes of one machine) and a nonce that the tool also returns: the nonce in a journal's recorded result names
the one execution that was recorded. Replayed steps execute nothing and log nothing.

Gates (``FAULTS_GATE``, comma-separated): ``tool:NAME`` or ``model:TURN``. A process reaching the gate writes
``<FAULTS_DIR>/at-<gate>`` (its pid) and waits until ``<FAULTS_DIR>/release`` exists; the test pauses it there.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from perdure import Agent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel

__all__ = ["log_event", "loop_agent", "read_log", "stall_agent"]


def _dir() -> Path:
    return Path(os.environ["FAULTS_DIR"])


def log_event(event: str, kind: str, name: str, run_id: str, key: str | None, nonce: str = "") -> None:
    """One line of the side-effect log (O_APPEND writes of one line are atomic across processes)."""
    line = {
        "event": event,
        "kind": kind,
        "name": name,
        "run_id": run_id,
        "key": key,
        "pid": os.getpid(),
        "t": time.monotonic(),
        "nonce": nonce,
    }
    fd = os.open(os.environ["FAULTS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _gate_reached(point: str) -> bool:
    if point not in os.environ.get("FAULTS_GATE", "").split(","):
        return False
    (_dir() / f"at-{point.replace(':', '_')}").write_text(str(os.getpid()))
    return True


def _released() -> bool:
    return (_dir() / "release").exists()


def _run_id_of(messages: list[ModelMessage]) -> str:
    # The prompt is "<run_id>|<text>", so the model function knows its run.
    first = messages[0]
    assert isinstance(first, ModelRequest)
    for part in first.parts:
        if part.part_kind == "user-prompt":
            return str(part.content).split("|", 1)[0]
    return "?"


def _turn(messages: list[ModelMessage]) -> int:
    return 1 + sum(isinstance(m, ModelResponse) for m in messages)


def _returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def _effect_tool(agent: Agent[Any, Any], name: str, *, pause: tuple[float, float] = (0.0, 0.0), **options: Any) -> None:
    """A tool whose every execution is logged (start, end) and returns its nonce; it waits at its gate."""

    def tool(ctx: RunContext[Any], item: str) -> str:
        nonce = uuid.uuid4().hex
        log_event("start", "tool", name, ctx.run_id, ctx.idempotency_key, nonce)
        if _gate_reached(f"tool:{name}"):
            while not _released():
                time.sleep(0.01)
        if pause[1]:
            time.sleep(random.uniform(*pause))
        log_event("end", "tool", name, ctx.run_id, ctx.idempotency_key, nonce)
        return f"{name} {item} [{nonce}]"

    tool.__name__ = name
    tool.__doc__ = f"{name.capitalize()} an item.\n\nArgs:\n    item: what to {name}."
    agent.tool(**options)(tool)


# --- the stalled-worker agent ------------------------------------------------------------------------------------


def _stall_script(messages: list[ModelMessage], turn: int) -> ModelResponse:
    calls = {1: ("fetch", "order"), 2: ("pay", "invoice"), 3: ("notify", "customer")}
    if turn in calls:
        tool, item = calls[turn]
        return ModelResponse(parts=[ToolCallPart(tool_name=tool, args={"item": item}, tool_call_id=f"c{turn}")])
    return ModelResponse(parts=[TextPart(content=f"done after {len(_returns(messages))} calls")])


def stall_agent() -> Agent[Any, Any]:
    """fetch (at-least-once) → pay (at-most-once) → notify → an answer; a gate may hold a tool or a model turn.

    The model function is ``async``: a model request held at its gate waits on the event loop, as a slow HTTP
    response does.
    """

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id, turn = _run_id_of(messages), _turn(messages)
        log_event("start", "model", f"turn/{turn}", run_id, f"turn/{turn}/model")
        if _gate_reached(f"model:{turn}"):
            while not _released():  # noqa: ASYNC110 - another process makes the file
                await asyncio.sleep(0.01)
        return _stall_script(messages, turn)

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name="faults-stall"), name="faults-stall")
    _effect_tool(agent, "fetch")
    _effect_tool(agent, "pay", side_effects="at_most_once")
    _effect_tool(agent, "notify")
    return agent


def blocking_agent() -> Agent[Any, Any]:
    """One ``async def`` tool that blocks the event loop (a synchronous sleep) until released, then an answer."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if _turn(messages) == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="crunch", args={"item": "report"}, tool_call_id="b1")])
        return ModelResponse(parts=[TextPart(content="crunched")])

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name="faults-blocking"), name="faults-blocking")

    @agent.tool
    async def crunch(ctx: RunContext[Any], item: str) -> str:
        """Crunch an item, blocking the event loop meanwhile (the mistake this agent is about).

        Args:
            item: what to crunch.
        """
        log_event("start", "tool", "crunch", ctx.run_id, ctx.idempotency_key)
        (_dir() / "at-crunch").write_text(str(os.getpid()))
        while not _released():
            time.sleep(0.01)  # noqa: ASYNC251 - deliberately blocking the loop: the point of this agent
        log_event("end", "tool", "crunch", ctx.run_id, ctx.idempotency_key)
        return f"crunched {item}"

    return agent


# --- the kill-loop agent -----------------------------------------------------------------------------------------


def _loop_script(messages: list[ModelMessage], turn: int, run_id: str) -> ModelResponse:
    def call(tool: str, n: int) -> ToolCallPart:
        return ToolCallPart(tool_name=tool, args={"item": run_id}, tool_call_id=f"{tool}-{n}")

    if turn == 1:
        return ModelResponse(parts=[call("reserve", 1), call("charge", 1)])  # two calls at once
    if turn == 2:
        return ModelResponse(parts=[call("ship", 2)])  # waits for a human's decision
    if turn == 3:
        return ModelResponse(parts=[call("notify", 3)])
    return ModelResponse(parts=[TextPart(content=f"{run_id}: {len(_returns(messages))} results")])


def loop_agent() -> Agent[Any, Any]:
    """reserve ∥ charge (at-most-once) → ship (needs approval) → notify → an answer; every step takes a little
    while, so that kills land inside tool calls and model requests alike."""

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id, turn = _run_id_of(messages), _turn(messages)
        log_event("start", "model", f"turn/{turn}", run_id, f"turn/{turn}/model")
        await asyncio.sleep(random.uniform(0.02, 0.12))
        return _loop_script(messages, turn, run_id)

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name="faults-loop"), name="faults-loop")
    _effect_tool(agent, "reserve", pause=(0.05, 0.3))
    _effect_tool(agent, "charge", pause=(0.05, 0.3), side_effects="at_most_once")
    _effect_tool(agent, "ship", pause=(0.05, 0.2), requires_approval=True)
    _effect_tool(agent, "notify", pause=(0.05, 0.2))
    return agent


def pg_agent() -> Agent[Any, Any]:
    """reserve ∥ charge (at-most-once) → notify → an answer quoting every result the model was given (so the
    output shows which execution of each call was recorded)."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id, turn = _run_id_of(messages), _turn(messages)

        def call(tool: str, n: int) -> ToolCallPart:
            return ToolCallPart(tool_name=tool, args={"item": run_id}, tool_call_id=f"{tool}-{n}")

        if turn == 1:
            return ModelResponse(parts=[call("reserve", 1), call("charge", 1)])
        if turn == 2:
            return ModelResponse(parts=[call("notify", 2)])
        results = "; ".join(f"{p.tool_name}={p.model_response_str()}" for p in _returns(messages))
        return ModelResponse(parts=[TextPart(content=results)])

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name="faults-pg"), name="faults-pg")
    _effect_tool(agent, "reserve", pause=(0.05, 0.3))
    _effect_tool(agent, "charge", pause=(0.05, 0.3), side_effects="at_most_once")
    _effect_tool(agent, "notify", pause=(0.05, 0.3))
    return agent


AGENTS = {"stall": stall_agent, "blocking": blocking_agent, "loop": loop_agent, "pg": pg_agent}

# For `perdure worker tests.faults.agents:loop`: a module-level Agent the CLI wraps in a DurableAgent.
loop = loop_agent()
