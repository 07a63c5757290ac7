"""Every name the Temporal engine persists (histories, memos, visibility) is pinned here: renaming code never
changes them. A failure means runs in flight or finished runs would no longer be found, replayed or decided."""

from __future__ import annotations

from perdure import Agent
from perdure.models.test import TestModel
from perdure.temporal import TemporalAgent, _names


def test_workflow_and_activity_names() -> None:
    ta = TemporalAgent(Agent(TestModel(), name="support"))
    assert (ta.workflow_name, ta.model_activity_name, ta.tool_activity_name) == (
        "perdure:support",
        "perdure:support:model_request",
        "perdure:support:tool_call",
    )
    assert [fn.__temporal_activity_definition.name for fn in ta.activities] == [  # type: ignore[attr-defined]
        "perdure:support:model_request",
        "perdure:support:tool_call",
    ]
    assert ta.workflow_class.__temporal_workflow_definition.name == "perdure:support"  # type: ignore[attr-defined]
    assert _names.WORKFLOW_PREFIX == "perdure:"


def test_query_update_and_memo_names() -> None:
    assert (_names.STATUS_QUERY, _names.MODEL_REQUEST_QUERY, _names.APPROVE_UPDATE) == (
        "perdure.status",
        "perdure.model_request",
        "perdure.approve",
    )
    assert (_names.MEMO_AGENT, _names.MEMO_FINGERPRINT, _names.MEMO_PROMPT, _names.MEMO_PENDING) == (
        "perdure.agent",
        "perdure.fingerprint",
        "perdure.prompt",
        "perdure.pending",
    )
    assert _names.ENGINE == "temporal"


def test_the_built_in_workflow_answers_by_those_names() -> None:
    defn = TemporalAgent(Agent(TestModel(), name="pinned")).workflow_class.__temporal_workflow_definition  # type: ignore[attr-defined]
    assert set(defn.queries) >= {"perdure.status", "perdure.model_request"}
    assert set(defn.updates) == {"perdure.approve"}
