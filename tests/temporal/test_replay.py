"""Committed workflow histories replay with Temporal's ``Replayer`` on every run: a change to the loop, the payloads
or the names that would break runs in flight fails here. Regenerate: ``python -m tests.temporal.record_histories``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from perdure.temporal import PerdurePlugin, TemporalAgent

from ._user_workflow import SupportTicket, support
from .record_histories import HISTORIES, recorded_agents

EXPECTED = ["continued", "reader", "shopper", "support_ticket"]


def load(name: str) -> WorkflowHistory:
    data = json.loads((HISTORIES / f"{name}.json").read_text())
    workflow_id = data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    return WorkflowHistory.from_json(workflow_id, data)


def replay(history: WorkflowHistory, *agents: TemporalAgent[Any, Any]) -> None:
    replayer = Replayer(workflows=[SupportTicket], plugins=[PerdurePlugin(*agents, support)])
    asyncio.run(replayer.replay_workflow(history))


def test_every_recorded_history_is_committed() -> None:
    assert sorted(p.stem for p in Path(HISTORIES).glob("*.json")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_recorded_history_replays(name: str) -> None:
    replay(load(name), *recorded_agents(fail_on_nondeterminism=False).values())


def test_a_changed_agent_does_not_replay() -> None:
    """The replay check has teeth: the same history with a tool renamed is a non-determinism error."""
    renamed = recorded_agents(fail_on_nondeterminism=False, fetch_tool="fetch_page")
    with pytest.raises(Exception, match="Nondeterminism") as info:
        replay(load("reader"), *renamed.values())
    assert "fetch_page" in str(info.value)
