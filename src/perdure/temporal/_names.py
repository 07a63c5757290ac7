"""Every name the Temporal engine persists, in one place: they are recorded in workflow histories, memos and
visibility, so runs in flight and finished runs depend on them. Pinned by tests/temporal/test_names.py.

Payload field names (``_wire.py``) are compatibility data too; the committed histories pin them.
"""

from __future__ import annotations

__all__ = [
    "APPROVE_UPDATE",
    "ENGINE",
    "MEMO_AGENT",
    "MEMO_FINGERPRINT",
    "MEMO_PENDING",
    "MEMO_PROMPT",
    "MODEL_REQUEST_QUERY",
    "STATUS_QUERY",
    "WORKFLOW_PREFIX",
    "model_activity_name",
    "tool_activity_name",
    "workflow_name",
]

ENGINE = "temporal"
"""``perdure.engine`` of this engine's spans and metrics."""

WORKFLOW_PREFIX = "perdure:"
"""Every built-in agent workflow's type starts with it (how the admin finds perdure's runs)."""

STATUS_QUERY = "perdure.status"
MODEL_REQUEST_QUERY = "perdure.model_request"
APPROVE_UPDATE = "perdure.approve"

MEMO_AGENT = "perdure.agent"
MEMO_FINGERPRINT = "perdure.fingerprint"
MEMO_PROMPT = "perdure.prompt"
MEMO_PENDING = "perdure.pending"


def workflow_name(agent: str) -> str:
    """The built-in workflow type of an agent (its workflow id is the run id)."""
    return f"{WORKFLOW_PREFIX}{agent}"


def model_activity_name(agent: str) -> str:
    return f"{WORKFLOW_PREFIX}{agent}:model_request"


def tool_activity_name(agent: str) -> str:
    return f"{WORKFLOW_PREFIX}{agent}:tool_call"
