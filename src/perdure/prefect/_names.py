"""Names that Prefect stores: cache keys, deployment, tags, task and input keys. Compatibility data.

A run written by one version of perdure is resumed by the next one, so these never change with a Python
rename; ``tests/prefect/test_names.py`` pins them.

The cache key of a step is built from the run id and the step key only (never a timestamp, a Prefect run id or
the step's inputs): a flow run that executes the same run again finds the steps it already recorded.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "DEPLOYMENT",
    "INPUT_PREFIX",
    "MODEL_TASK",
    "OUTCOME_INPUT",
    "TAG",
    "decision_input",
    "pause_key",
    "pending_input",
    "started_key",
    "step_cache_key",
    "tool_task",
]

DEPLOYMENT = "perdure"
"""Every agent's flow gets one deployment of this name: Prefect suspends only flow runs of a deployment."""

TAG = "perdure"
INPUT_PREFIX = "perdure-"
"""Every flow run input perdure writes starts with it (Prefect allows lowercase letters, digits and dashes)."""
MODEL_TASK = "model request"
OUTCOME_INPUT = f"{INPUT_PREFIX}outcome"
"""Flow run input holding how a run ended: status, output, usage, error."""


def tool_task(tool_name: str) -> str:
    return f"tool call: {tool_name}"


def _digest(text: str, size: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def step_cache_key(run_id: str, step_key: str) -> str:
    """Where the result of ``step_key`` of run ``run_id`` is stored: ``perdure/<run digest>/<step digest>``.

    One folder (or object prefix) per run, so a run's records can be listed or pruned together.
    """
    return f"perdure/{_digest(run_id)}/{_digest(step_key)}"


def started_key(run_id: str, step_key: str) -> str:
    """The mark an at-most-once tool call leaves before it runs."""
    return step_cache_key(run_id, step_key) + ".started"


def pause_key(step_key: str) -> str:
    """The key of the suspension that waits for decisions, from the first waiting step (stable on replay).

    Prefect allows lowercase letters, digits and dashes in run input keys, which it builds from this.
    """
    return f"{INPUT_PREFIX}{_digest(step_key, 24)}"


def pending_input(pause: str) -> str:
    """Flow run input listing the calls a suspension waits for."""
    return f"{pause}-pending"


def decision_input(pause: str, index: int) -> str:
    """Flow run input holding the decision on one of several calls, until all of them are decided."""
    return f"{pause}-decision-{index}"
