"""The conformance scenarios: deterministic agents whose every side effect is counted in a file.

Child processes build the same agents from the same names, so a run started in one process can be resumed in
another. Side effects — every *executed* tool call and every *executed* model request — are appended to the
file named by ``PERDURE_EFFECTS``; replayed steps write nothing, which is what the suite counts.

Crash points (``PERDURE_CRASH_AT``), each reached once per run (a marker file remembers it):

* ``model:N``        inside the model request of turn N
* ``tool:NAME``      inside tool NAME, after its side effect was written
* ``before_model:N`` after turn N-1's tool results, before turn N's model request
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..._agent import Agent
from ..._context import RunContext
from ..._exceptions import ModelRetry
from ..._loop import Prompt
from ...messages import (
    BinaryContent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from ...models.function import AgentInfo, FunctionModel
from ...usage import UsageLimits

__all__ = ["SCENARIOS", "Booking", "build_agent", "crash_point", "effects", "usage_limits_for"]


class Booking(BaseModel):
    """A confirmed booking."""

    city: str
    nights: int
    confirmation: str


def _effects_file() -> Path:
    path = os.environ.get("PERDURE_EFFECTS")
    if not path:
        raise RuntimeError("PERDURE_EFFECTS must name the side-effect log of the conformance run")
    return Path(path)


def effect(kind: str, name: str, run_id: str, key: str | None = None) -> None:
    """Record one side effect (one JSON line; O_APPEND writes are atomic across processes)."""
    line = json.dumps({"kind": kind, "name": name, "run_id": run_id, "key": key}) + "\n"
    fd = os.open(_effects_file(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def effects(path: str | os.PathLike[str], run_id: str | None = None) -> list[dict[str, Any]]:
    """The side effects recorded so far (of one run, if given)."""
    p = Path(path)
    if not p.exists():
        return []
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return [r for r in rows if run_id is None or r["run_id"] == run_id]


def crash_point(point: str, run_id: str) -> None:
    """Block forever (to be SIGKILLed by the test) the first time ``point`` is reached in this run."""
    if os.environ.get("PERDURE_CRASH_AT") != point:
        return
    marker = _effects_file().with_name(f"crashed-{run_id}-{point.replace(':', '_')}")
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    while True:  # the parent sees the marker and kills this process with SIGKILL
        time.sleep(0.05)


def _turn(messages: list[ModelMessage]) -> int:
    return 1 + sum(1 for m in messages if isinstance(m, ModelResponse))


def _returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]


def _run_id_of(messages: list[ModelMessage]) -> str:
    # The run id rides in the first user prompt ("<run_id>|<prompt>"), so the model function knows its run.
    for m in messages:
        if isinstance(m, ModelRequest):
            for p in m.parts:
                if isinstance(p, UserPromptPart):
                    return p.text.split("|", 1)[0]
    return "?"


def _model(name: str, script: Any) -> FunctionModel:
    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id = _run_id_of(messages)
        turn = _turn(messages)
        effect("model", name, run_id, f"turn/{turn}/model")
        crash_point(f"model:{turn}", run_id)
        response: ModelResponse = script(messages, turn, info)
        return response

    return FunctionModel(fn, model_name=f"conformance-{name}")


def _call(tool: str, call_id: str, **args: Any) -> ToolCallPart:
    return ToolCallPart(tool_name=tool, args=args, tool_call_id=call_id)


def _summary(messages: list[ModelMessage]) -> str:
    return "; ".join(f"{p.tool_name}={p.model_response_str()}" for p in _returns(messages))


def _before_model(ctx: RunContext[Any]) -> str:
    crash_point(f"before_model:{ctx.usage.requests + 1}", ctx.run_id)
    return "You are a conformance-test agent."


def _base(name: str, script: Any, **kw: Any) -> Agent[Any, Any]:
    agent: Agent[Any, Any] = Agent(_model(name, script), name=f"conformance-{name}", **kw)
    agent.instructions(_before_model)
    return agent


def _side_effect_tool(agent: Agent[Any, Any], name: str, result: str, **options: Any) -> None:
    def tool(ctx: RunContext[Any], amount: int) -> str:
        effect("tool", name, ctx.run_id, ctx.idempotency_key)
        crash_point(f"tool:{name}", ctx.run_id)
        return f"{result} {amount}"

    tool.__name__ = name
    tool.__doc__ = f"{name.replace('_', ' ').capitalize()}.\n\nArgs:\n    amount: how much, in cents."
    agent.tool(**options)(tool)


def plain() -> Agent[Any, Any]:
    return _base("plain", lambda m, t, i: ModelResponse(parts=[TextPart(content="hello from perdure")]))


def structured() -> Agent[Any, Any]:
    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        args = {"city": "Lisbon", "nights": 3, "confirmation": "LIS-3"}
        return ModelResponse(parts=[_call(info.output_tools[0].name, "out1", **args)])

    return _base("structured", script, output_type=Booking)


def tool_retry() -> Agent[Any, Any]:
    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[_call("lookup", "c1", code="A")])
        if turn == 2:
            return ModelResponse(parts=[_call("lookup", "c2", code="B")])
        return ModelResponse(parts=[TextPart(content=f"found: {_summary(messages)}")])

    agent = _base("tool_retry", script)

    @agent.tool
    def lookup(ctx: RunContext[Any], code: str) -> str:
        """Look up a booking code."""
        effect("tool", "lookup", ctx.run_id, ctx.idempotency_key)
        if code != "B":
            raise ModelRetry(f"no booking {code!r}; codes are single letters after A")
        return f"booking {code}"

    return agent


def parallel() -> Agent[Any, Any]:
    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(
                parts=[
                    _call("charge_card", "p3", amount=300),
                    _call("reserve", "p1", amount=100),
                    _call("notify", "p2", amount=200),
                ]
            )
        return ModelResponse(parts=[TextPart(content=f"done: {_summary(messages)}")])

    agent = _base("parallel", script)
    _side_effect_tool(agent, "charge_card", "charged")
    _side_effect_tool(agent, "reserve", "reserved")
    _side_effect_tool(agent, "notify", "notified")
    return agent


def workflow() -> Agent[Any, Any]:
    """Three model turns, two tool calls: every kind of step boundary to crash at."""
    renamed = os.environ.get("PERDURE_SCENARIO_VARIANT") == "renamed"
    charge = "charge_card_v2" if renamed else "charge_card"

    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[_call(charge, "w1", amount=4200)])
        if turn == 2:
            return ModelResponse(parts=[_call("send_receipt", "w2", amount=4200)])
        return ModelResponse(parts=[TextPart(content=f"booked: {_summary(messages)}")])

    agent = _base("workflow", script)
    _side_effect_tool(agent, charge, "charged")
    _side_effect_tool(agent, "send_receipt", "receipt for")
    return agent


def at_most_once() -> Agent[Any, Any]:
    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[_call("transfer", "t1", amount=999)])
        return ModelResponse(parts=[TextPart(content=f"transfer: {_summary(messages)}")])

    agent = _base("at_most_once", script)
    _side_effect_tool(agent, "transfer", "transferred", side_effects="at_most_once")
    return agent


def approval() -> Agent[Any, Any]:
    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[_call("refund", "r1", amount=4200)])
        return ModelResponse(parts=[TextPart(content=f"refund: {_summary(messages)}")])

    agent = _base("approval", script)
    _side_effect_tool(agent, "refund", "refunded", requires_approval=True)
    return agent


def slow() -> Agent[Any, Any]:
    """A tool that holds the run until the test releases it: cancellation arrives meanwhile."""

    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        if turn == 1:
            return ModelResponse(parts=[_call("hold", "h1", amount=1)])
        return ModelResponse(parts=[TextPart(content=f"released: {_summary(messages)}")])

    agent = _base("slow", script)

    @agent.tool
    def hold(ctx: RunContext[Any], amount: int) -> str:
        """Hold until released."""
        effect("tool", "hold", ctx.run_id, ctx.idempotency_key)
        started = _effects_file().with_name(f"holding-{ctx.run_id}")
        started.write_text("1")
        release = _effects_file().with_name(f"release-{ctx.run_id}")
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "held"

    return agent


def looping() -> Agent[Any, Any]:
    """Calls a tool every turn, forever: only UsageLimits stop it."""

    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[_call("tick", f"l{turn}", amount=turn)])

    agent = _base("looping", script)
    _side_effect_tool(agent, "tick", "tick")
    return agent


# A small PNG-like file, the same bytes in every process: the "vision" scenario's prompt carries it.
PICTURE = BinaryContent(data=bytes(range(256)) * 64, media_type="image/png")


def vision() -> Agent[Any, Any]:
    """A prompt with a file: every model request must see it exactly (after a crash too)."""

    def script(messages: list[ModelMessage], turn: int, info: AgentInfo) -> ModelResponse:
        first = messages[0]
        assert isinstance(first, ModelRequest)
        files = [
            c
            for p in first.parts
            if isinstance(p, UserPromptPart) and not isinstance(p.content, str)
            for c in p.content
            if isinstance(c, BinaryContent)
        ]
        seen = ",".join(f.identifier for f in files)
        if turn == 1:
            return ModelResponse(parts=[_call("look", "v1", amount=1)])
        return ModelResponse(parts=[TextPart(content=f"saw {seen}")])

    agent = _base("vision", script)
    _side_effect_tool(agent, "look", "looked")
    return agent


SCENARIOS = {
    "plain": plain,
    "structured": structured,
    "tool_retry": tool_retry,
    "parallel": parallel,
    "workflow": workflow,
    "at_most_once": at_most_once,
    "approval": approval,
    "slow": slow,
    "looping": looping,
    "vision": vision,
}


def build_agent(name: str) -> Agent[Any, Any]:
    """The scenario agent ``name`` (a fresh instance; engines that register agents by name need one each)."""
    return SCENARIOS[name]()


def usage_limits_for(name: str) -> UsageLimits | None:
    return UsageLimits(request_limit=3) if name == "looping" else None


def prompt_for(name: str, run_id: str) -> Prompt:
    if name == "vision":
        return [f"{run_id}|what is in this picture?", PICTURE]
    return f"{run_id}|run the {name} scenario"
