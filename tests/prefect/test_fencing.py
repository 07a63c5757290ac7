"""Fencing on Prefect (issue 13, item 4), with real processes against the session's real Prefect server.

* Two processes resuming the same orphan (its process was killed mid-tool) at the same moment: one executes it.
* A process stopped (SIGSTOP) in the middle of a tool call while its run is taken over (Prefect marks it
  ``Crashed``, as its zombie detection does when heartbeats stop, and another process resumes it): woken up
  (SIGCONT), it records nothing and stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from perdure.prefect import _names as names
from perdure.prefect._runs import find
from perdure.testing.conformance import Harness
from tests.conformance.engine_prefect import ENGINES

from ._server import PrefectServer


def _harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return ENGINES["prefect"](request, tmp_path)


def test_two_processes_resuming_one_orphan_at_the_same_moment(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    harness = _harness(request, tmp_path)
    harness.crash("run", "tool:charge_card", scenario="workflow", run_id="orphan-1")
    assert len(harness.tool_effects("orphan-1", "charge_card")) == 1  # charged, then killed before the record

    at = time.time() + 10  # both children have imported everything and wait for this moment
    children = [harness.spawn("resume_at", scenario="workflow", run_id="orphan-1", at=at) for _ in range(2)]
    outcomes = [harness.finish(child, "resume_at") for child in children]

    statuses = sorted(o["status"] for o in outcomes)
    assert statuses in (["completed", "failed"], ["completed", "completed"]), outcomes
    for outcome in outcomes:
        if outcome["status"] == "failed":  # the one that lost the claim says another process executes the run
            assert outcome["error"]["type"] == "RunInProgress", outcome
    # The run went on in one process: the interrupted call ran once more, each later step once.
    assert len(harness.tool_effects("orphan-1", "charge_card")) == 2
    assert len(harness.tool_effects("orphan-1", "send_receipt")) == 1
    turns = [e["key"] for e in harness.model_effects("orphan-1")]
    assert len(turns) == len(set(turns)), turns


def test_a_stopped_process_whose_run_was_taken_over_records_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, prefect_server: PrefectServer
) -> None:
    harness = _harness(request, tmp_path)
    run_id = "stalled-1"
    first = harness.spawn("run", scenario="slow", run_id=run_id)
    try:
        harness.wait_for_file(first, tmp_path / f"holding-{run_id}", "the held tool call")
        os.kill(first.pid, signal.SIGSTOP)  # a frozen VM, a long GC pause, a laptop lid: alive, but not running
        try:
            asyncio.run(_mark_crashed(f"conformance-slow-{harness.options['namespace']}", run_id))
            (tmp_path / f"release-{run_id}").write_text("1")
            second = harness.call("resume", scenario="slow", run_id=run_id)
            assert second["status"] == "completed", second
        finally:
            os.kill(first.pid, signal.SIGCONT)
        stale = harness.finish(first, "run")
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    assert stale["status"] == "failed" and stale["error"]["type"] == "ClaimLost", stale
    assert len(harness.tool_effects(run_id, "hold")) == 2  # the stopped call, and the new owner's
    assert [e["key"] for e in harness.model_effects(run_id)].count("turn/2/model") <= 1
    # The step's record is the new owner's (attempt 2): the stale process did not overwrite it.
    record = _record(Path(harness.options["results"]), run_id, "turn/1/tool/h1")
    assert record["attempt"] == 2
    status = harness.call("status", scenario="slow", run_id=run_id)
    assert status["status"] == "completed"


async def _mark_crashed(flow: str, run_id: str) -> None:
    """What Prefect's zombie detection does to a flow run whose heartbeats stopped."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    async with get_client() as client:
        flow_run = await find(client, run_id, flow)
        assert flow_run is not None and flow_run.state.is_running()
        await client.set_flow_run_state(flow_run.id, Crashed(message="no heartbeat"), force=True)


def _record(results: Path, run_id: str, step_key: str) -> dict[str, Any]:
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.serializers import JSONSerializer

    store = ResultStore(result_storage=LocalFileSystem(basepath=str(results)), serializer=JSONSerializer())
    record: dict[str, Any] = store.read(names.step_cache_key(run_id, step_key)).result
    return record


def test_a_claimant_that_died_before_moving_the_run_on_leaves_it_claimable(name: str, results: Path) -> None:
    from prefect.client.orchestration import get_client

    from perdure.durable.owner import this_owner
    from perdure.prefect import PrefectAgent, TaskConfig

    from .agents import Counted, one_tool_then_text

    counted = Counted(name, one_tool_then_text("charge"))
    counted.tool("charge")
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    prefect_agent.start_sync("charge 42", run_id="claimed-1")
    dead = f"{this_owner().split(':')[0]}:4194999:1"  # this host, a pid that does not run

    async def claim_and_die() -> None:
        async with get_client() as client:
            flow_run = await find(client, "claimed-1", name)
            value = json.dumps({"owner": dead, "at": time.time()})
            await client.create_flow_run_input(flow_run.id, key=names.claim_input(flow_run.state.id), value=value)

    asyncio.run(claim_and_die())
    assert prefect_agent.recover_sync() == ["claimed-1"]
    assert prefect_agent.get_run_sync("claimed-1").status == "completed"
    assert counted.count("charge") == 1
