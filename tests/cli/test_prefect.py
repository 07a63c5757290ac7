"""``perdure runs list|show`` with ``--prefect URL``: the real command, in a subprocess, against the session's
Prefect server, on runs that PrefectAgents made in other processes (the conformance kit's children), including a
run whose process was killed (stuck). Deciding, cancelling and pruning: test_engines.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ..conformance.conftest import ENGINES
from ._run import perdure


def test_cli_lists_and_shows_prefect_runs(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    harness = ENGINES["prefect"](request, tmp_path)
    env = harness.options["env"]
    where = ["--prefect", env["PREFECT_API_URL"]]
    ids = {name: f"{name}-{harness.options['namespace']}" for name in ("done", "waiting", "failed", "stuck")}
    children = {
        status: harness.spawn("run", scenario=scenario, run_id=ids[name])
        for name, scenario, status in (
            ("done", "plain", "completed"),
            ("waiting", "approval", "waiting"),
            ("failed", "looping", "failed"),
        )
    }
    # Killed mid-tool: Prefect still says running, but the process that ran it is gone.
    harness.crash("run", "tool:charge_card", scenario="workflow", run_id=ids["stuck"])
    for status, child in children.items():
        assert harness.finish(child)["status"] == status
    mine = set(ids.values())

    async def main() -> None:
        listed, failed, stuck, shown, human = await asyncio.gather(
            perdure("runs", "list", *where, "--json", env=env),
            perdure("runs", "list", *where, "--status", "failed", "--json", env=env),
            perdure("runs", "list", *where, "--stuck", "10m", "--json", env=env),
            perdure("runs", "show", ids["waiting"], *where, "--json", env=env),
            perdure("runs", "show", ids["done"], *where, env=env),
        )
        assert {r["run_id"]: r["status"] for r in listed.json() if r["run_id"] in mine} == {
            ids["done"]: "completed",
            ids["waiting"]: "waiting",
            ids["failed"]: "failed",
            ids["stuck"]: "running",
        }
        assert [r["run_id"] for r in failed.json() if r["run_id"] in mine] == [ids["failed"]]
        assert [r["run_id"] for r in stuck.json() if r["run_id"] in mine] == [ids["stuck"]]  # its owner is gone
        waiting = shown.json()
        assert (waiting["status"], [p["tool_call_id"] for p in waiting["pending"]]) == ("waiting", ["r1"])
        assert [s["key"] for s in waiting["steps"]][:1] == ["turn/1/model"]
        assert human.returncode == 0 and "completed" in human.stdout and "turn/1/model" in human.stdout

    asyncio.run(main())
