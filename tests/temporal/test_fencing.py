"""Fencing on Temporal (issue 13, item 4): a worker that stalls past an activity's heartbeat timeout and then
completes the activity writes nothing: the server rejects its result, and the run keeps the retry's.

The stalled worker is a real process whose tool blocks its event loop (a synchronous wait inside an ``async def``
tool), so it sends no heartbeat. Once the server has timed the first attempt out and scheduled the retry, the
stalled worker is released while the run still waits for that step: it completes the activity with its own result,
and the server refuses it. The retry then runs on another worker, and its result is the one the run records.
An at-most-once tool is not run again by the retry: its outcome is recorded as unknown.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from perdure.temporal import PerdurePlugin

from ._devserver import DevServer
from ._stall import stall_agent
from .conftest import running_worker

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


async def _until(what: str, check: Any, proc: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after DEADLINE seconds (or if ``proc`` died)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the stalling worker exited before {what}:\n{err[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not reached in {DEADLINE}s: {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("side_effects", ["at_least_once", "at_most_once"])
def test_a_stalled_worker_completing_late_is_rejected_and_the_retry_kept(
    temporal_server: DevServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side_effects: str
) -> None:
    monkeypatch.setenv("PERDURE_STALL_DIR", str(tmp_path))
    name = f"stall-{side_effects.replace('_', '-')}"
    tools_queue = f"{task_queue}-tools"
    agent = stall_agent(name, tools_queue, side_effects, client=temporal_server.address, task_queue=task_queue)  # type: ignore[arg-type]
    run_id = f"stall-{uuid.uuid4().hex[:8]}"
    stalling = subprocess.Popen(
        [sys.executable, "-m", "tests.temporal._stall", temporal_server.address, name, tools_queue, side_effects],
        cwd=ROOT,
        env={**_env(), "PERDURE_STALL_WORKER": "stalling", "PERDURE_STALL_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert stalling.stdout is not None and stalling.stdout.readline() == "ready\n", stalling.communicate()[1]

        async def main() -> str:
            client = await Client.connect(temporal_server.address)
            handle = client.get_workflow_handle(run_id)
            async with running_worker(client, task_queue, agent):  # workflow code and model requests
                await agent.start("fetch it", run_id=run_id)
                await _until("the tool stalls its worker", _exists(tmp_path / "stalled"), stalling)

                async def retried() -> bool:  # the server timed the first attempt out (no heartbeat came)
                    pending = (await handle.describe()).raw_description.pending_activities
                    return bool(pending) and pending[0].attempt >= 2

                await _until("the server schedules the retry", retried, stalling)
                # The stalled worker wakes up while the run still waits for this step, and completes the activity
                # it holds with its own result; it reports the completion before it exits (graceful shutdown).
                (tmp_path / "release").write_text("1")
                await _until("the stalled tool returns", _exists(tmp_path / "returned"), stalling)
                stalling.send_signal(signal.SIGTERM)
                out, err = stalling.communicate(timeout=DEADLINE)
                assert out.endswith("stopped\n"), err
                assert "not found on completion" in err  # the server refused it (the SDK core says so)
                assert await retried()  # the step still waits for its retry
                retry = Worker(
                    client,
                    task_queue=tools_queue,
                    plugins=[PerdurePlugin(agent, workflows=False)],
                    identity="retry-worker",
                )
                async with retry:
                    result = await agent.wait(run_id, timeout=DEADLINE)

            history = await handle.fetch_history()
            completed = [
                e.activity_task_completed_event_attributes
                for e in history.events
                if e.HasField("activity_task_completed_event_attributes")
            ]
            scheduled = {
                e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
                for e in history.events
                if e.HasField("activity_task_scheduled_event_attributes")
            }
            tools = [c for c in completed if scheduled[c.scheduled_event_id].endswith(":tool_call")]
            assert [c.identity for c in tools] == ["retry-worker"]  # one completion: the retry's
            assert "fetched by stalling" not in str(history.to_json())
            return str(result.output)

        output = asyncio.run(main())
        executions = (tmp_path / "effects").read_text().split()
        if side_effects == "at_least_once":
            assert output == "fetched by retry"
            assert executions == ["stalling", "retry"]  # it ran twice (at-least-once); the stale result is gone
        else:
            assert "outcome of this call is unknown" in output  # never run again: the retry records "unknown"
            assert executions == ["stalling"]
    finally:
        if stalling.poll() is None:
            stalling.kill()
            stalling.communicate()


def _exists(path: Path) -> Any:
    async def check() -> bool:
        return path.exists()  # noqa: ASYNC240 - a stat, polled

    return check


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    return env
