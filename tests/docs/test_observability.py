"""docs/observability.md: spans, metrics, content capture, an OTLP backend across processes, Logfire, stuck runs.

The examples that set OpenTelemetry's global providers (or configure Logfire) run in a process of their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._collector import Collector
from ._run import perdure, run_concurrently, run_example


def test_traces_metrics_and_content(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_concurrently(
        ("observability/traces.py", (), {"cwd": tmp_path_factory.mktemp("traces")}),
        ("observability/metrics.py", (), {"cwd": tmp_path_factory.mktemp("metrics")}),
        ("observability/content.py", (), {"cwd": tmp_path_factory.mktemp("content")}),
    )


def test_otlp_one_trace_across_two_processes(workdir: Path) -> None:
    with Collector() as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
        out = run_example("observability/otlp.py", cwd=workdir, env=env, fresh_process=True)
        assert "waiting for a decision" in out
        out = run_example("observability/otlp.py", "approve", cwd=workdir, env=env, fresh_process=True)
        assert out == "Refunded.\n"
    attempts = sorted(s["attempt"] for s in collector.spans if s["name"] == "invoke_agent returns")
    assert attempts == [1, 2]  # one span per process
    assert len({s["trace_id"] for s in collector.spans}) == 1
    assert {s["service"] for s in collector.spans} == {"support"}


def test_logfire_without_a_token_prints_the_spans(workdir: Path) -> None:
    out = run_example("observability/with_logfire.py", cwd=workdir, env={"LOGFIRE_TOKEN": ""}, fresh_process=True)
    assert "invoke_agent returns" in out


def test_stuck_runs(workdir: Path) -> None:
    # A run whose process was killed: its owner is gone, so it is stuck whatever the window.
    run_example("concepts/at_most_once.py", cwd=workdir, fresh_process=True, returncode=-9)
    (stuck,) = json.loads(perdure("runs", "list", "--stuck", "10m", "--json", cwd=workdir))
    assert stuck["run_id"] == "transfer-1"
    assert "transfer-1" in perdure("runs", "list", "--stuck", "10m", cwd=workdir)
    assert perdure("runs", "list", "--status", "waiting", "--json", cwd=workdir) == "[]\n"
