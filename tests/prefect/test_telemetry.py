"""A Prefect run's telemetry: one trace per run, one ``invoke_agent`` span per execution, executed steps only."""

from __future__ import annotations

from pathlib import Path

import pytest

from perdure import RunWaiting
from perdure.prefect import PrefectAgent, TaskConfig
from tests.observability.conftest import Telemetry, telemetry  # noqa: F401  # the in-memory SDK fixture

from .agents import Counted, one_tool_then_text


def test_a_run_suspended_and_resumed_is_one_trace(telemetry: Telemetry, name: str, results: Path) -> None:  # noqa: F811
    telemetry.configure()
    counted = Counted(name, one_tool_then_text("refund"))
    counted.tool("refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))
    with pytest.raises(RunWaiting):
        prefect_agent.run_sync("refund 1", run_id="traced-1")
    prefect_agent.approve_sync("traced-1", "c1")
    prefect_agent.resume_sync("traced-1")

    agent, chat = f"invoke_agent {name}", "chat scripted"
    assert telemetry.tree() == [
        (
            f"accept_run {name}",
            [
                (agent, [(chat, [])]),  # suspended at the approval: no process held from here
                ("await_approval refund", []),  # reported by the process that decided
                (agent, [("execute_tool refund", []), (chat, [])]),  # the first request replayed: no span
            ],
        )
    ]
    first, second = telemetry.named("invoke_agent")
    for span, attempt, status in ((first, 1, "waiting"), (second, 2, "completed")):
        attributes = dict(span.attributes or {})
        assert attributes["perdure.engine"] == "prefect"
        assert attributes["perdure.run_id"] == "traced-1"
        assert (attributes["perdure.attempt"], attributes["perdure.run.status"]) == (attempt, status)
    assert dict(second.attributes or {})["perdure.steps.replayed"] == 1  # the first model request
    assert telemetry.total("perdure.runs", perdure__run__status="started", perdure__engine="prefect") == 1
    assert telemetry.total("perdure.runs", perdure__run__status="completed", perdure__engine="prefect") == 1
