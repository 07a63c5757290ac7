"""One run, one trace: a run killed with SIGKILL mid-tool and resumed in a new process.

Each child process exports its spans to its own JSON-lines file as they end (a killed process keeps what it
exported); the test reads both files. The engines listed in TRACED_ENGINES run it through their conformance
harness: an adapter joins once it reports through ``perdure.observability.engine``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from perdure.testing.conformance import Harness

from ..conformance.conftest import ENGINES
from ._export import SPANS_FILE_ENV, read_spans

TRACED_ENGINES = ["local"]

ROOT = Path(__file__).resolve().parents[2]


def _traced(harness: Harness) -> Harness:
    """The same engine, its driver wrapped to export the child's spans."""
    options = {**harness.options, "traced_driver": harness.driver}
    return Harness(harness.engine, "tests.observability._traced:TracedDriver", options, harness.workdir)


def _env(spans: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {SPANS_FILE_ENV: str(spans), "PYTHONPATH": path}


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = span["attributes"]
    return attributes


@pytest.mark.parametrize("engine", TRACED_ENGINES)
def test_a_run_killed_mid_tool_and_resumed_elsewhere_is_one_trace(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    harness = _traced(ENGINES[engine](request, tmp_path))
    first, second = tmp_path / "spans-1.jsonl", tmp_path / "spans-2.jsonl"
    harness.crash("run", "tool:charge_card", run_id="trace-1", scenario="workflow", extra_env=_env(first))
    outcome = harness.call("resume", _env(second), scenario="workflow", run_id="trace-1")
    assert outcome["status"] == "completed", outcome

    spans = [s for s in read_spans(first, second) if _attrs(s).get("perdure.run_id") == "trace-1"]
    killed = {s["pid"] for s in read_spans(first)}
    assert len(killed) == 1 and killed.isdisjoint(s["pid"] for s in read_spans(second))

    # One trace, across both processes, and every span says which run, engine and attempt it belongs to.
    assert len({s["trace_id"] for s in spans}) == 1
    for s in spans:
        assert _attrs(s)["perdure.engine"] == engine
        assert isinstance(_attrs(s)["perdure.attempt"], int)
    assert {_attrs(s)["perdure.attempt"] for s in spans if s["name"].startswith(("chat", "execute_tool"))} == {1, 2}

    # Steps: each one that executed has exactly one span. The killed call of charge_card never ended (no span in
    # attempt 1); attempt 2 re-ran it, and replayed turn 1's model request without a span.
    steps = [s for s in spans if "perdure.step.key" in _attrs(s)]
    by_key = Counter(_attrs(s)["perdure.step.key"] for s in steps)
    assert all(n == 1 for n in by_key.values()), by_key
    assert {_attrs(s)["perdure.step.key"]: _attrs(s)["perdure.attempt"] for s in steps} == {
        "turn/1/model": 1,
        "turn/1/tool/w1": 2,
        "turn/2/model": 2,
        "turn/2/tool/w2": 2,
        "turn/3/model": 2,
    }

    # The attempt that was killed never ended its span; the resumed attempt's span continues the recorded
    # context, and the steps of both attempts sit under an invoke_agent span of that one trace.
    attempts = [s for s in spans if s["name"].startswith("invoke_agent")]
    assert [(_attrs(s)["perdure.attempt"], _attrs(s)["perdure.run.status"]) for s in attempts] == [(2, "completed")]
    roots = [s for s in spans if s["parent_id"] is None]
    if engine == "local":
        [accept] = roots
        assert accept["name"] == "accept_run conformance-workflow"
        assert attempts[0]["parent_id"] == accept["span_id"]
        traceparent = _recorded_traceparent(Path(harness.options["journal"]), "trace-1")
        assert traceparent.split("-")[1:3] == [accept["trace_id"], accept["span_id"]]
    first_step = next(s for s in steps if _attrs(s)["perdure.step.key"] == "turn/1/model")
    assert first_step["parent_id"] not in {s["span_id"] for s in spans}  # attempt 1's span died with its process
    assert all(s["parent_id"] == attempts[0]["span_id"] for s in steps if _attrs(s)["perdure.attempt"] == 2)


def _recorded_traceparent(journal: Path, run_id: str) -> str:
    import sqlite3

    with sqlite3.connect(journal) as conn:
        (value,) = conn.execute("SELECT trace_context FROM perdure_runs WHERE run_id = ?", (run_id,)).fetchone()
    conn.close()
    traceparent: str = json.loads(value)["traceparent"]
    return traceparent
