"""Logfire is an OpenTelemetry SDK: configured (offline here), it receives perdure's spans and metrics as is.

It runs in a child process: ``logfire.configure`` sets the process's global providers, which the other tests
must not inherit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_logfire_configured_offline_receives_perdures_spans_and_metrics(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    env.pop("LOGFIRE_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.observability._logfire_child", str(tmp_path / "perdure.db")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])

    spans = report["spans"]
    plain = [s for s in spans if s["attributes"].get("perdure.engine") == "inline"]
    assert sorted(s["name"] for s in plain) == [
        "chat scripted",
        "chat scripted",
        "execute_tool lookup",
        "invoke_agent lookup",
    ]
    durable = [s for s in spans if s["attributes"].get("perdure.run_id") == "r1"]
    assert [s["name"] for s in durable] == [
        "accept_run refunds",
        "chat scripted",
        "invoke_agent refunds",
        "await_approval refund",
        "execute_tool refund",
        "chat scripted",
        "invoke_agent refunds",
    ]
    assert len({s["trace_id"] for s in durable}) == 1  # Logfire kept the run's recorded trace context
    assert [s["attributes"]["perdure.attempt"] for s in durable if s["name"].startswith("invoke_agent")] == [1, 2]
    assert {s["attributes"]["logfire.span_type"] for s in spans} == {"span"}

    assert {"perdure.runs", "perdure.run.attempts", "perdure.step.duration", "perdure.approvals.waiting"} <= set(
        report["metrics"]
    )
