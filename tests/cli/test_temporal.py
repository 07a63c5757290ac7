"""``perdure runs list|show|cancel`` and ``perdure approve`` with ``--temporal ADDRESS``: the real command, in a
subprocess, against the session's Temporal dev server, with no agent code on its side."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import Client  # a dev dependency: missing, these tests fail loudly rather than skip
from temporalio.worker import Worker

from perdure import Agent, AgentRunError, ModelHTTPError, RunWaiting
from perdure.messages import ModelMessage, ModelResponse
from perdure.models.function import AgentInfo, FunctionModel
from perdure.temporal import PerdurePlugin, TemporalAgent

from ..observability._agents import approval_agent, lookup_agent
from ..temporal._devserver import dev_server
from ._run import perdure


def failing_agent() -> Agent[None, str]:
    def refuse(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError("bad request", status_code=400, transient=False)

    return Agent(FunctionModel(refuse, model_name="scripted"), name="refused")


def test_cli_lists_shows_approves_and_cancels_temporal_runs(pytestconfig: pytest.Config) -> None:
    server = dev_server(pytestconfig)
    where = ["--temporal", server.address, "--namespace", server.namespace]
    queue = f"cli-{uuid.uuid4().hex[:12]}"
    refunds, lookup, refused = (
        TemporalAgent(a, task_queue=queue) for a in (approval_agent(), lookup_agent(), failing_agent())
    )
    ids = {name: f"cli-{name}-{uuid.uuid4().hex[:8]}" for name in ("waiting", "done", "failed", "stuck")}

    async def main() -> None:
        client = await Client.connect(server.address, namespace=server.namespace)
        for agent in (refunds, lookup, refused):
            agent.client = client
        async with Worker(client, task_queue=queue, plugins=[PerdurePlugin(refunds, lookup, refused)]):
            with pytest.raises(RunWaiting):
                await refunds.run("refund order 42", run_id=ids["waiting"])
            await lookup.run("look it up", run_id=ids["done"])
            with pytest.raises(AgentRunError, match="bad request"):
                await refused.run("hello", run_id=ids["failed"])
            # A run no worker ever picks up: its task queue has none.
            stuck = await client.start_workflow(
                "perdure:stalled",
                {"agent": "stalled", "run_id": ids["stuck"]},
                id=ids["stuck"],
                task_queue=f"{queue}-none",
            )
            try:
                await asyncio.sleep(1.5)
                await check(client, where, ids)
                assert (await refunds.resume(ids["waiting"])).output == "refunded"  # approved by the CLI
            finally:
                await stuck.terminate("test over")

    asyncio.run(main())


async def check(client: Client, where: list[str], ids: dict[str, str]) -> None:
    mine = set(ids.values())

    def statuses(runs: Any) -> dict[str, str]:
        return {r["run_id"]: r["status"] for r in runs if r["run_id"] in mine}

    listed, failed, stuck, waiting = await asyncio.gather(
        perdure("runs", "list", *where, "--json"),
        perdure("runs", "list", *where, "--status", "failed", "--json"),
        perdure("runs", "list", *where, "--stuck", "1s", "--json"),
        perdure("runs", "list", *where, "--status", "waiting", "--agent", "refunds"),
    )
    assert statuses(listed.json()) == {
        ids["waiting"]: "waiting",
        ids["done"]: "completed",
        ids["failed"]: "failed",
        ids["stuck"]: "running",
    }
    assert statuses(failed.json()) == {ids["failed"]: "failed"}
    assert statuses(stuck.json()) == {ids["stuck"]: "running"}  # waiting for a human is not stuck
    assert waiting.returncode == 0 and ids["waiting"] in waiting.stdout and ids["done"] not in waiting.stdout

    # show asks the run's workflow (a worker of the agent answers); the CLI itself has no agent code.
    shown = (await perdure("runs", "show", ids["waiting"], *where, "--json")).json()
    assert (shown["status"], shown["agent"], [p["tool_call_id"] for p in shown["pending"]]) == (
        "waiting",
        "refunds",
        ["r1"],
    )
    assert [s["key"] for s in shown["steps"]] == ["turn/1/model", "turn/1/approval/r1"]
    done = (await perdure("runs", "show", ids["done"], *where, "--json")).json()
    assert (done["status"], done["output"], done["usage"]["requests"]) == ("completed", "SECRET-OUTPUT", 2)
    human = await perdure("runs", "show", ids["waiting"], *where)
    assert f"perdure approve {ids['waiting']} r1" in human.stdout

    wrong = await perdure("approve", ids["waiting"], "nope", *where)
    assert wrong.returncode == 2 and "has no call 'nope' waiting for a decision" in wrong.stderr
    approved = await perdure("approve", ids["waiting"], "r1", *where)
    assert approved.returncode == 0, approved.stderr

    cancelled = await perdure("runs", "cancel", ids["done"], *where)  # ended already: nothing to do
    assert cancelled.returncode == 0 and "completed" in cancelled.stdout
    missing = await perdure("runs", "show", "no-such-run", *where)
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
