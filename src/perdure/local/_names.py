"""Every name the embedded engine stores: compatibility data, pinned by tests/core/test_persisted_names.py.

A journal written by one release is opened by the next: its tables, columns and the file's application id never
change with a Python rename. Step keys (``turn/3/model``...) are the core's, in ``perdure._ops``.
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "INDEXES", "TABLES"]

APPLICATION_ID = 0x50455244
"""``PRAGMA application_id`` of a perdure journal ("PERD")."""

TABLES: dict[str, tuple[str, ...]] = {
    "perdure_runs": (
        "run_id",
        "agent",
        "fingerprint",
        "status",
        "input",
        "output",
        "error",
        "usage",
        "owner",
        "lease_expires",
        "cancel_requested",
        "attempts",
        "trace_context",
        "created_at",
        "updated_at",
        "finished_at",
    ),
    "perdure_steps": (
        "run_id",
        "key",
        "seq",
        "kind",
        "describe",
        "status",
        "result",
        "payload",
        "attempt",
        "started_at",
        "finished_at",
        "input_tokens",
        "output_tokens",
    ),
}

INDEXES = ("perdure_runs_status", "perdure_runs_finished", "perdure_runs_created", "perdure_runs_agent_created")
