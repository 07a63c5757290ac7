"""Names that Prefect stores: cache keys, deployment, tags, task and input keys. Compatibility data.

A run written by one version of perdure is resumed by the next one, so these never change with a Python
rename; ``tests/prefect/test_names.py`` pins them.

The cache key of a step is built from the run id and the step key only (never a timestamp, a Prefect run id or
the step's inputs): a flow run that executes the same run again finds the steps it already recorded.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "CLAIMED_BY",
    "CLAIM_PREFIX",
    "CONTEXT",
    "DEPLOYMENT",
    "FLOW_FUNCTION",
    "INPUT_PREFIX",
    "MODEL_TASK",
    "OUTCOME_INPUT",
    "PARENT_TAG",
    "RECORD_VERSION",
    "STEPS_INPUT",
    "TAG",
    "claim_input",
    "decision_input",
    "pause_key",
    "pending_input",
    "run_folder",
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
"""Flow run input holding how a run ended: status, output, usage, error (and ``steps``, see ``STEPS_INPUT``)."""
STEPS_INPUT = f"{INPUT_PREFIX}steps"
"""Flow run input holding the run's steps as its last attempt saw them, written when a run suspends (a finished
run keeps them in its outcome): the run's own account, consistent as soon as ``run()`` returns, where Prefect's
task runs reach the server as events a moment later."""
CLAIM_PREFIX = f"{INPUT_PREFIX}claim-"
CLAIMED_BY = "perdure: executed by "
"""The message of the ``Pending`` state by which a process claims a run, followed by its owner id: counted for
the run's attempts, read for its owner until it runs."""
CONTEXT = "perdure"
"""The key of perdure's fields in a flow run's context: agent, fingerprint, nonce, trace_context,
parent_flow_run_id, storage (the directories holding the run's records, for ``prune``)."""
PARENT_TAG = "parent:"
"""Tag prefix linking a run started inside the user's own flow to that flow run."""
FLOW_FUNCTION = "run_agent"
"""The flow function; its parameters ``run_id``, ``prompt`` and ``options`` (the run's input) are stored."""
RECORD_VERSION = 1
"""``v`` of a step's persisted record: ``{v, key, kind, describe, result, attempt, started_at, finished_at}``."""


def tool_task(tool_name: str) -> str:
    return f"tool call: {tool_name}"


def _digest(text: str, size: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def run_folder(run_id: str) -> str:
    """The folder (or object prefix) of a run's records: ``perdure/<run digest>``, pruned with the run."""
    return f"perdure/{_digest(run_id)}"


def step_cache_key(run_id: str, step_key: str) -> str:
    """Where the result of ``step_key`` of run ``run_id`` is stored: ``perdure/<run digest>/<step digest>``.

    One folder (or object prefix) per run, so a run's records can be listed or pruned together.
    """
    return f"{run_folder(run_id)}/{_digest(step_key)}"


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


def claim_input(state_id: object, retry: int = 0) -> str:
    """Flow run input created by the process that claims the run out of one state (by the state's id).

    Creating a run input whose key exists fails, so each state a run is claimed out of (scheduled, crashed, or an
    orphan's running state) is claimed by one process only, however many try at the same moment. A claimant that
    died before it moved the run on leaves its claim behind: the state is claimed again under ``retry`` 1, 2...
    """
    return f"{CLAIM_PREFIX}{state_id}" + (f"-{retry}" if retry else "")


def decision_input(pause: str, index: int) -> str:
    """Flow run input holding the decision on one of several calls, until all of them are decided."""
    return f"{pause}-decision-{index}"
