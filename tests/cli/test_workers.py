"""``perdure worker`` and ``perdure runs resume`` on every engine, for real: the command imports the agent's module
(``tests.cli.engine_agents:approval``, the durable agent of the engine under test), serves it until SIGTERM, and
finishes the runs a human approved from the command line; ``runs resume`` gives a run's output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ..conformance.conftest import ENGINES
from ._run import perdure
from .test_engines import ENGINE_NAMES, flags

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_worker_and_resume_on_every_engine(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    harness = ENGINES[engine](request, tmp_path)
    where, env = flags(harness)
    env = {
        **env,
        "PERDURE_CLI_ENGINE": "local" if engine == "local" else engine.split("-")[0],
        "PERDURE_CONFORMANCE_OPTIONS": json.dumps(harness.options),
        "PERDURE_EFFECTS": str(harness.effects_path),
        "PYTHONPATH": str(ROOT),
    }
    tag = uuid.uuid4().hex[:8]
    ids = [f"cli-worker-{i}-{tag}" for i in range(2)]
    for run_id in ids:
        assert harness.call("run", scenario="approval", run_id=run_id)["status"] == "waiting"
    spec = "tests.cli.engine_agents:approval"
    worker = subprocess.Popen(
        [sys.executable, "-m", "perdure", "worker", spec, *(where if engine == "local" else [])],
        cwd=tmp_path,
        env={**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def status(run_id: str) -> str:
        shown = await perdure("runs", "show", run_id, "--json", *where, env=env)
        return str(shown.json()["status"])

    async def main() -> None:
        assert worker.stdout is not None
        first = await asyncio.to_thread(worker.stdout.readline)
        assert first.startswith("perdure worker: agent conformance-approval"), first + worker.stderr.read()
        for run_id in ids:
            approved = await perdure("approve", run_id, "r1", *where, env=env)
            assert approved.returncode == 0, approved.stderr
        deadline = asyncio.get_running_loop().time() + 120
        while [await status(r) for r in ids] != ["completed", "completed"]:
            assert worker.poll() is None, worker.communicate()
            assert asyncio.get_running_loop().time() < deadline, [await status(r) for r in ids]
            await asyncio.sleep(0.2)
        resumed = await perdure(
            "runs", "resume", ids[1], "--agent", spec, *(where if engine == "local" else []), env=env
        )
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout) == "refund: refund=refunded 4200"

    try:
        asyncio.run(main())
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "worker stopped" in err
    for run_id in ids:
        assert len(harness.tool_effects(run_id, "refund")) == 1  # each approved refund ran once
