"""Every name a DBOS run stores is compatibility data: a run written by one release is recovered by the next.

This test fails when one changes. Changing one strands the runs in flight (DBOS finds a workflow by its name and
matches each step by position and name): keep the old name, or ship a migration.
"""

from __future__ import annotations

from perdure.dbos import _names


def test_the_stored_names_are_pinned() -> None:
    assert _names.WORKFLOW_PREFIX == "perdure:"
    assert _names.workflow_name("support") == "perdure:support"
    assert _names.agent_of("perdure:support") == "support" and _names.agent_of("app.flow") is None
    assert _names.STATUS_EVENT == "perdure.status"
    assert _names.STARTED_SUFFIX == "/started"
    assert _names.started_step("turn/1/tool/c1") == "turn/1/tool/c1/started"
    assert _names.DEFAULT_QUEUE == "perdure"
    assert _names.FORMAT == 1
    assert (_names.DESCRIBE, _names.RESULT, _names.ERROR, _names.PENDING) == ("d", "r", "e", "p")
    assert _names.RECV_STEP == "DBOS.recv"


def test_every_name_is_pinned_here() -> None:
    """A name added to _names must be added to the test above too."""
    assert sorted(_names.__all__) == [
        "DEFAULT_QUEUE",
        "DESCRIBE",
        "ERROR",
        "FORMAT",
        "PENDING",
        "RECV_STEP",
        "RESULT",
        "STARTED_SUFFIX",
        "STATUS_EVENT",
        "WORKFLOW_PREFIX",
        "agent_of",
        "started_step",
        "workflow_name",
    ]
