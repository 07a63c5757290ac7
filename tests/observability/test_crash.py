"""One run, one trace: a run killed with SIGKILL mid-tool and resumed in a new process.

Each child process exports its spans to its own JSON-lines file as they end (a killed process keeps what it
exported); the test reads both files. Every engine runs it through its conformance harness (the factories of
tests/conformance, with their session servers and databases).

Where engines differ: on Temporal the killed tool call is re-run by Temporal itself (an activity retry, once the
dead worker's heartbeat times out), before any worker picks the workflow up again, so it keeps the attempt that
scheduled it (1) and says its own try (``perdure.retry.attempt`` 2); the worker that then replays the history is
attempt 2, and executed the three steps after it. On Prefect, Prefect's own task-run spans (when an SDK is
configured) sit between an ``invoke_agent`` span and its steps' spans.
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

TRACED_ENGINES = ["local", "dbos-sqlite", "dbos-postgres", "temporal", "prefect"]

ROOT = Path(__file__).resolve().parents[2]


def _traced(harness: Harness) -> Harness:
    """The same engine, its driver wrapped to export the child's spans."""
    options = {**harness.options, "traced_driver": harness.driver}
    # The engine's own Harness class: some set up the children's environment.
    return type(harness)(harness.engine, "tests.observability._traced:TracedDriver", options, harness.workdir)


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

    everything = read_spans(first, second)  # with the engine's own spans (Prefect's task runs), if it has any
    spans = [s for s in everything if _attrs(s).get("perdure.run_id") == "trace-1"]
    killed = {s["pid"] for s in read_spans(first)}
    assert len(killed) == 1 and killed.isdisjoint(s["pid"] for s in read_spans(second))

    # One trace, across both processes, and every span says which run, engine and attempt it belongs to.
    assert len({s["trace_id"] for s in spans}) == 1
    for s in spans:
        assert _attrs(s)["perdure.engine"] == engine.partition("-")[0]  # dbos-sqlite, dbos-postgres: dbos
        assert isinstance(_attrs(s)["perdure.attempt"], int)
    assert {_attrs(s)["perdure.attempt"] for s in spans if s["name"].startswith(("chat", "execute_tool"))} == {1, 2}

    # Steps: each one that executed has exactly one span. The killed call of charge_card never ended (no span in
    # attempt 1); it ran again, once, in the second process; turn 1's model request was replayed without a span.
    steps = [s for s in spans if "perdure.step.key" in _attrs(s)]
    by_key = Counter(_attrs(s)["perdure.step.key"] for s in steps)
    assert all(n == 1 for n in by_key.values()), by_key
    rerun = {s["pid"] for s in steps if _attrs(s)["perdure.step.key"] == "turn/1/tool/w1"}
    assert rerun.isdisjoint(killed)
    assert {_attrs(s)["perdure.step.key"]: _attrs(s)["perdure.attempt"] for s in steps} == {
        "turn/1/model": 1,
        # Temporal re-ran the activity itself (its worker was gone) before any worker picked the workflow up
        # again: the call keeps the attempt that scheduled it, and says its own try.
        "turn/1/tool/w1": 1 if engine == "temporal" else 2,
        "turn/2/model": 2,
        "turn/2/tool/w2": 2,
        "turn/3/model": 2,
    }
    if engine == "temporal":
        [retried] = [s for s in steps if _attrs(s)["perdure.step.key"] == "turn/1/tool/w1"]
        assert _attrs(retried)["perdure.retry.attempt"] == 2

    # The attempt that was killed never ended its span; the resumed attempt's span continues the recorded
    # context (the accept_run span, the trace's one root), and the steps of both attempts sit under an
    # invoke_agent span of that one trace.
    attempts = [s for s in spans if s["name"].startswith("invoke_agent")]
    assert [(_attrs(s)["perdure.attempt"], _attrs(s)["perdure.run.status"]) for s in attempts] == [(2, "completed")]
    [accept] = [s for s in spans if s["parent_id"] is None]
    assert accept["name"] == "accept_run conformance-workflow"
    assert attempts[0]["parent_id"] == accept["span_id"]
    assert _attrs(attempts[0])["perdure.steps.executed"] == (3 if engine == "temporal" else 4)
    if engine == "local":
        traceparent = _recorded_traceparent(Path(harness.options["journal"]), "trace-1")
        assert traceparent.split("-")[1:3] == [accept["trace_id"], accept["span_id"]]
    parents = {s["span_id"]: s["parent_id"] for s in everything}

    def under(span: dict[str, Any], ancestor: dict[str, Any]) -> bool:
        """``ancestor`` is above ``span``: directly, or through the engine's own spans (Prefect's task runs)."""
        parent = span["parent_id"]
        while parent is not None and parent != ancestor["span_id"]:
            parent = parents.get(parent)
        return parent == ancestor["span_id"]

    for s in steps:
        # Attempt 1's span died with its process (its steps' parent is lost); attempt 2's holds every step that
        # attempt 2 executed.
        assert under(s, attempts[0]) == (_attrs(s)["perdure.attempt"] == 2), s["name"]


def _recorded_traceparent(journal: Path, run_id: str) -> str:
    import sqlite3

    with sqlite3.connect(journal) as conn:
        (value,) = conn.execute("SELECT trace_context FROM perdure_runs WHERE run_id = ?", (run_id,)).fetchone()
    conn.close()
    traceparent: str = json.loads(value)["traceparent"]
    return traceparent
