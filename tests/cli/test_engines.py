"""Every ``perdure`` command that operates runs, against every engine, for real: the embedded journal, DBOS on SQLite
and on PostgreSQL, the Temporal dev server, the Prefect server. Runs are made by the conformance kit's children
(other processes, as an application makes them); the command runs in a subprocess with the engine's flag.

list (all, --status, --agent, --stuck, human), show (--json, human, --messages), approve and deny (--by, --note),
deciding a decided call, cancel, prune (--dry-run, then for real). Each engine is asked the same and must answer
the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from perdure.testing.conformance import Harness

from ..conformance.conftest import ENGINES
from ._run import Done, perdure

ENGINE_NAMES = ["local", "dbos-sqlite", "dbos-postgres", "temporal", "prefect"]


def flags(harness: Harness) -> tuple[list[str], dict[str, str]]:
    """The command line's engine options for the harness's runs, and the environment the command needs."""
    options = harness.options
    if harness.engine == "local":
        return ["--journal", options["journal"]], {}
    if harness.engine.startswith("dbos"):
        return ["--dbos", options["url"]], {}
    if harness.engine == "temporal":
        return ["--temporal", options["address"], "--namespace", options["namespace"]], {}
    assert harness.engine == "prefect"
    env: dict[str, str] = options["env"]
    return ["--prefect", env["PREFECT_API_URL"]], env


@contextlib.asynccontextmanager
async def workers(harness: Harness) -> AsyncIterator[None]:
    """On Temporal a run's steps are a query and a decision is a workflow update, both answered by a worker of the
    agent: one runs here meanwhile (the command itself has no agent code). The other engines need no process of
    the agent for either."""
    if harness.engine != "temporal":
        yield
        return
    from temporalio.client import Client
    from temporalio.worker import Worker

    from perdure.temporal import PerdurePlugin, TemporalAgent
    from perdure.testing.conformance.scenarios import build_agent

    options = harness.options
    client = await Client.connect(options["address"], namespace=options["namespace"])
    agents = [
        TemporalAgent(build_agent(scenario), client=client, task_queue=options["task_queue"])
        for scenario in ("plain", "approval", "looping")
    ]
    async with Worker(client, task_queue=options["task_queue"], plugins=[PerdurePlugin(*agents)]):
        yield


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_every_command_on_every_engine(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = ENGINES[engine](request, tmp_path)
    monkeypatch.setenv("PERDURE_EFFECTS", str(harness.effects_path))  # the scenario agents of a worker here
    where, env = flags(harness)
    tag = uuid.uuid4().hex[:8]
    ids = {name: f"cli-{name}-{tag}" for name in ("done", "yes", "no", "cancel", "failed")}
    mine = set(ids.values())
    for name, scenario, status in (
        ("done", "plain", "completed"),
        ("yes", "approval", "waiting"),
        ("no", "approval", "waiting"),
        ("cancel", "approval", "waiting"),
        ("failed", "looping", "failed"),
    ):
        assert harness.call("run", scenario=scenario, run_id=ids[name])["status"] == status, name

    async def cli(*args: str) -> Done:
        return await perdure(*args, *where, env=env)

    async def show(run_id: str) -> Any:
        return (await cli("runs", "show", run_id, "--json")).json()

    async def until(run_id: str, status: str | None, timeout: float = 60) -> None:
        """Until ``runs show`` says ``status`` (None: no such run): some engines apply a request a moment later."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            shown = await cli("runs", "show", run_id, "--json")
            now = None if shown.returncode == 2 and f"run {run_id!r}" in shown.stderr else shown.json()["status"]
            if now == status:
                return
            assert asyncio.get_running_loop().time() < deadline, (run_id, now, shown.stderr)
            await asyncio.sleep(0.2)

    async def main() -> None:
        async with workers(harness):
            await commands()

    async def commands() -> None:
        # --- list ---------------------------------------------------------------------------------------------
        listed = (await cli("runs", "list", "--json")).json()
        statuses = {r["run_id"]: r["status"] for r in listed if r["run_id"] in mine}
        assert statuses == {
            ids["done"]: "completed",
            ids["yes"]: "waiting",
            ids["no"]: "waiting",
            ids["cancel"]: "waiting",
            ids["failed"]: "failed",
        }
        agent = next(r["agent"] for r in listed if r["run_id"] == ids["yes"])
        waiting = (await cli("runs", "list", "--status", "waiting", "--json")).json()
        assert {r["run_id"] for r in waiting} & mine == {ids["yes"], ids["no"], ids["cancel"]}
        assert {r["status"] for r in waiting} == {"waiting"}
        of_agent = (await cli("runs", "list", "--agent", agent, "--json")).json()
        assert {r["run_id"] for r in of_agent} & mine == {ids["yes"], ids["no"], ids["cancel"]}
        stuck = (await cli("runs", "list", "--stuck", "10m", "--json")).json()
        assert {r["run_id"] for r in stuck} & mine == set()  # finished or waiting for a human: not stuck
        human = await cli("runs", "list", "--status", "failed")
        assert human.returncode == 0 and ids["failed"] in human.stdout and ids["done"] not in human.stdout

        # --- show ---------------------------------------------------------------------------------------------
        shown = await show(ids["yes"])
        assert (shown["status"], [p["tool_call_id"] for p in shown["pending"]]) == ("waiting", ["r1"])
        assert [s["key"] for s in shown["steps"]][:1] == ["turn/1/model"]
        done = await show(ids["done"])
        assert (done["status"], done["output"]) == ("completed", "hello from perdure")
        text = await cli("runs", "show", ids["yes"])
        assert text.returncode == 0 and f"perdure approve {ids['yes']} r1" in text.stdout
        talk = await cli("runs", "show", ids["done"], "--messages")
        assert talk.returncode == 0 and f"user: {ids['done']}|" in talk.stdout, talk.stdout
        failed = await show(ids["failed"])
        assert failed["status"] == "failed" and failed["error"]["type"] == "UsageLimitExceeded"
        missing = await cli("runs", "show", f"nope-{tag}")
        assert missing.returncode == 2 and f"run 'nope-{tag}'" in missing.stderr

        # --- approve, deny, decided already, cancel -------------------------------------------------------------
        approved = await cli("approve", ids["yes"], "r1", "--by", "alice", "--note", "checked")
        assert approved.returncode == 0, approved.stderr
        assert f"run {ids['yes']}: call r1 approved" in approved.stdout
        denied = await cli("approve", ids["no"], "r1", "--deny", "--note", "over the limit")
        assert denied.returncode == 0, denied.stderr
        assert "denied" in denied.stdout
        again = await cli("approve", ids["yes"], "r1")
        if harness.engine.startswith("dbos"):
            # DBOS's admin lists the call as pending until the run takes the decision; a second decision
            # before that is deduplicated (one message per call), and reported as done.
            assert again.returncode == 0, again.stderr
        else:
            assert again.returncode == 2 and "'r1'" in again.stderr and "Traceback" not in again.stderr
        cancelled = await cli("runs", "cancel", ids["cancel"])
        assert cancelled.returncode == 0, cancelled.stderr
        await until(ids["cancel"], "cancelled")
        for name, output in (("yes", "refund: refund=refunded 4200"), ("no", None)):
            result = await asyncio.to_thread(harness.call, "resume", scenario="approval", run_id=ids[name])
            assert result["status"] == "completed", result
            if output is not None:
                assert result["output"] == output
            else:
                assert "over the limit" in result["output"]

        # --- prune ---------------------------------------------------------------------------------------------
        finished = {ids[n] for n in ("done", "yes", "no", "cancel", "failed")}
        would = (await cli("runs", "prune", "--older-than", "0s", "--dry-run", "--json")).json()
        assert finished <= set(would)
        assert (await show(ids["done"]))["status"] == "completed"  # a dry run deletes nothing
        kept = (await cli("runs", "prune", "--older-than", "30d", "--json")).json()
        assert set(kept) & finished == set()
        pruned = (await cli("runs", "prune", "--older-than", "0s", "--json")).json()
        assert finished <= set(pruned)
        for run_id in finished:
            await until(run_id, None, timeout=180)  # Temporal deletes at its own pace (about a minute)

    asyncio.run(main())
