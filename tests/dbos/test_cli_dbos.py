"""``perdure runs list|show|cancel`` and ``perdure approve`` with ``--dbos URL``: the real command, in a subprocess,
against a DBOS system database that a launched application writes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from perdure import RunWaiting
from perdure.dbos import DBOSAgent

from . import agents


def perdure(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perdure", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_lists_shows_approves_and_cancels_dbos_runs(launch: Callable[[], None], dbos_url: str) -> None:
    tools, _ = agents.one_tool()
    refunds, _ = agents.approval()
    first, second = DBOSAgent(tools), DBOSAgent(refunds)
    launch()

    async def main() -> None:
        await first.run("one", run_id="cli-a")
        with pytest.raises(RunWaiting):
            await second.run("two", run_id="cli-b")
        with pytest.raises(RunWaiting):
            await second.run("three", run_id="cli-c")

        listed = perdure("runs", "list", "--dbos", dbos_url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert {(r["run_id"], r["status"]) for r in json.loads(listed.stdout)} == {
            ("cli-a", "completed"),
            ("cli-b", "waiting"),
            ("cli-c", "waiting"),
        }
        waiting = json.loads(perdure("runs", "list", "--dbos", dbos_url, "--status", "waiting", "--json").stdout)
        assert sorted(r["run_id"] for r in waiting) == ["cli-b", "cli-c"]

        shown = perdure("runs", "show", "cli-b", "--dbos", dbos_url)
        assert shown.returncode == 0, shown.stderr
        assert (
            "turn/1/model" in shown.stdout and "waiting" in shown.stdout and "perdure approve cli-b r1" in shown.stdout
        )

        approved = perdure("approve", "cli-b", "r1", "--dbos", dbos_url)
        assert approved.returncode == 0, approved.stderr
        assert (await second.wait("cli-b")).output == "refund: refund=refunded 4200"

        cancelled = perdure("runs", "cancel", "cli-c", "--dbos", dbos_url)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled" in cancelled.stdout
        assert (
            json.loads(perdure("runs", "show", "cli-c", "--dbos", dbos_url, "--json").stdout)["status"] == "cancelled"
        )

        stuck = perdure("runs", "list", "--dbos", dbos_url, "--stuck", "10m", "--json")
        assert stuck.returncode == 0, stuck.stderr
        assert json.loads(stuck.stdout) == []  # nothing is running without progress

        unknown = perdure("runs", "show", "nope", "--dbos", dbos_url)
        assert unknown.returncode == 2 and "run 'nope'" in unknown.stderr

    asyncio.run(main())
