"""Agents and a conformance driver for the embedded engine's own tests.

Child processes import this module (``tests.local.agents``), so a run started in one process is resumed in
another from the same definitions. Side effects are counted in the file named by ``PERDURE_EFFECTS``, as in the
conformance kit; the conformance scenarios (``slow``, ``approval``, ...) are reachable by name too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from perdure import Agent, DurableAgent, RunContext
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel
from perdure.testing.conformance import scenarios
from perdure.testing.conformance.driver import outcome_of
from perdure.testing.conformance.local import LocalDriver
from perdure.testing.conformance.scenarios import crash_point, effect


def _run_id_of(messages: list[ModelMessage]) -> str:
    # As in the conformance scenarios: the prompt is "<run_id>|<text>", so the model knows its run.
    first = messages[0]
    assert isinstance(first, ModelRequest)
    for part in first.parts:
        if part.part_kind == "user-prompt":
            return str(part.content).split("|", 1)[0]
    return "?"


def _returns(messages: list[ModelMessage]) -> list[str]:
    return [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]


def quick(name: str = "quick") -> Agent[Any, Any]:
    """One tool call (``stamp``), then a text answer naming what the tool returned."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id = _run_id_of(messages)
        turn = 1 + sum(isinstance(m, ModelResponse) for m in messages)
        effect("model", name, run_id, f"turn/{turn}/model")
        if turn == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="stamp", args={"n": 7}, tool_call_id="s1")])
        return ModelResponse(parts=[TextPart(content=f"stamped: {'; '.join(_returns(messages))}")])

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name=f"local-{name}"), name=f"local-{name}")

    @agent.tool
    def stamp(ctx: RunContext[Any], n: int) -> str:
        """Stamp a document.

        Args:
            n: the stamp number.
        """
        effect("tool", "stamp", ctx.run_id, ctx.idempotency_key)
        return f"stamp {n} for {ctx.run_id}"

    return agent


def unknown_wait() -> Agent[Any, Any]:
    """An at-most-once ``transfer`` whose unknown outcome (after a crash) waits for a human."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        run_id = _run_id_of(messages)
        turn = 1 + sum(isinstance(m, ModelResponse) for m in messages)
        effect("model", "unknown_wait", run_id, f"turn/{turn}/model")
        if turn == 1:
            return ModelResponse(parts=[ToolCallPart(tool_name="transfer", args={"amount": 999}, tool_call_id="t1")])
        return ModelResponse(parts=[TextPart(content=f"transfer: {'; '.join(_returns(messages))}")])

    agent: Agent[Any, Any] = Agent(FunctionModel(answer, model_name="local-unknown-wait"), name="local-unknown-wait")

    @agent.tool(side_effects="at_most_once", on_unknown="wait")
    def transfer(ctx: RunContext[Any], amount: int) -> str:
        """Transfer money.

        Args:
            amount: how much, in cents.
        """
        effect("tool", "transfer", ctx.run_id, ctx.idempotency_key)
        crash_point("tool:transfer", ctx.run_id)
        return f"transferred {amount}"

    return agent


LOCAL_SCENARIOS = {"quick": quick, "unknown_wait": unknown_wait}

# For `perdure worker tests.local.agents:<name>`: module-level Agents the CLI wraps in a DurableAgent.
worker_agent = quick("worker")
slow_agent = scenarios.build_agent("slow")
approval_agent = scenarios.build_agent("approval")


def build(scenario: str) -> Agent[Any, Any]:
    if scenario in LOCAL_SCENARIOS:
        return LOCAL_SCENARIOS[scenario]()
    return scenarios.build_agent(scenario)


def prompt(scenario: str, run_id: str) -> str:
    return f"{run_id}|run the {scenario} scenario"


class Driver(LocalDriver):
    """``LocalDriver`` over these agents too, with a configurable lease and a few operations of its own."""

    def _durable(self, scenario: str) -> DurableAgent[Any, Any]:
        return DurableAgent(
            build(scenario),
            journal=self.options["journal"],
            poll_interval=0.05,
            lease_seconds=self.options.get("lease_seconds", 30.0),
        )

    async def run_many(self, scenario: str, run_ids: list[str]) -> dict[str, Any]:
        """Run several runs of ``scenario`` concurrently in this process; each one's outcome."""
        durable = self._durable(scenario)
        outcomes = await asyncio.gather(
            *(
                outcome_of(
                    durable.run(prompt(scenario, r), run_id=r, usage_limits=scenarios.usage_limits_for(scenario))
                )
                for r in run_ids
            )
        )
        return dict(zip(run_ids, outcomes, strict=True))

    async def start(self, scenario: str, run_id: str) -> dict[str, Any]:
        """Accept a run and return at once (no step executes here)."""
        await self._durable(scenario).start(prompt(scenario, run_id), run_id=run_id)
        return await self.status(scenario, run_id)

    async def recover(self, scenario: str) -> dict[str, Any]:
        """``recover()`` in this process: the ids it resumed, and the outcome of each."""
        durable = self._durable(scenario)
        ids = await durable.recover()
        return {"recovered": ids, "runs": {r: await self.status(scenario, r) for r in ids}}

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        info = await self._durable(scenario).get_run(run_id)
        return {**await super().status(scenario, run_id), "output": info.output, "attempts": info.attempts}
