"""Every name a perdure run stores in DBOS's system database. Compatibility data: pinned by tests/dbos/test_names.py.

A run written by one release is recovered by the next (DBOS finds workflows by name and matches steps by position
*and* name), so none of these change with a Python rename.

=============================  ==================================================================================
DBOS object                    perdure content
=============================  ==================================================================================
workflow ``perdure:<agent>``   one run; its workflow id is the run id; input: the run's JSON input (prompt,
                               history, limits, ``format``, ``fingerprint``, ``trace_context``) once; output: the
                               result (``format``, ``output``, ``messages``, ``new_from``, ``usage``)
step ``turn/N/model``          a model request; output ``{"d": describe, "r": ModelResponse JSON}`` or, for a
                               failed request, ``{"d": describe, "e": error record}``
step ``turn/N/tool/<id>``      a tool call; output ``{"d": describe, "r": ToolOutcome JSON}``
step ``.../<id>/started``      an at-most-once call is about to run; output ``{"d": describe}``
step ``turn/N/approval/<id>``  a call waits for a decision; output ``{"d": describe, "p": pending call}``
message, topic = wait key      the decision ``{"approved": bool, "note": str | None}`` (``DBOS.send``)
event ``perdure.status``       ``{"status": "waiting" | "running", "pending": [...]}`` while the run waits
queue ``perdure``              where ``start()`` enqueues runs by default
=============================  ==================================================================================

Values are plain JSON types (dicts, lists, strings), so any DBOS serializer stores them and any process reads
them back without perdure's classes.
"""

from __future__ import annotations

__all__ = [
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

WORKFLOW_PREFIX = "perdure:"
STATUS_EVENT = "perdure.status"
STARTED_SUFFIX = "/started"
DEFAULT_QUEUE = "perdure"
FORMAT = 1
"""The ``format`` field of a run's input and result."""

# Keys of a step's output.
DESCRIBE = "d"
RESULT = "r"
ERROR = "e"
PENDING = "p"

RECV_STEP = "DBOS.recv"
"""DBOS's own name for the step that took a message: a decision, in the order the waits were recorded."""


def workflow_name(agent_name: str) -> str:
    return f"{WORKFLOW_PREFIX}{agent_name}"


def agent_of(workflow: str) -> str | None:
    """The agent name of a perdure workflow name; None for any other workflow."""
    return workflow[len(WORKFLOW_PREFIX) :] if workflow.startswith(WORKFLOW_PREFIX) else None


def started_step(key: str) -> str:
    """The name of an at-most-once call's "about to run" mark."""
    return key + STARTED_SUFFIX
