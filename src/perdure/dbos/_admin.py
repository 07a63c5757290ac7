"""Run administration against a DBOS system database, for the ``perdure`` CLI (``--dbos URL``).

These work from any process: they talk to the system database through a ``DBOSClient`` and need neither the
agent nor a launched DBOS. ``url`` is the system database URL the application gives DBOS
(``postgresql://...`` or ``sqlite:///...``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dbos import DBOSClient

from .._exceptions import UserError
from .._ops import Decision
from ._agent import _PERDURE_TO_DBOS, decision_topic
from ._codec import STATUS_EVENT, WORKFLOW_PREFIX, workflow_name
from ._inspect import ACTIVE, build_run_info

__all__ = ["approve", "cancel", "get_run", "list_runs"]


@contextmanager
def _client(url: str) -> Iterator[Any]:
    try:
        client = DBOSClient(system_database_url=url)
    except Exception as e:
        raise UserError(f"cannot reach the DBOS system database at {url!r}: {type(e).__name__}: {e}") from e
    try:
        yield client
    finally:
        client.destroy()


def _status(client: Any, run_id: str) -> Any:
    found = client.list_workflows(workflow_ids=[run_id])
    if not found or not str(found[0].name).startswith(WORKFLOW_PREFIX):
        raise UserError(f"no perdure run {run_id!r} in the DBOS system database")
    return found[0]


def _event(client: Any, status: Any) -> Any:
    if status.status not in ACTIVE:
        return None
    return client.get_event(status.workflow_id, STATUS_EVENT, timeout_seconds=0)


def list_runs(
    url: str, status: str | None = None, limit: int = 100, *, agent: str | None = None
) -> list[dict[str, Any]]:
    """perdure runs (of one ``agent``, or all), newest first, as JSON dicts (``RunInfo.to_json()``, no steps)."""
    if status is not None and status not in _PERDURE_TO_DBOS:
        raise UserError(f"unknown run status {status!r}; one of: {', '.join(_PERDURE_TO_DBOS)}")
    dbos_statuses = _PERDURE_TO_DBOS[status] if status else None
    out: list[dict[str, Any]] = []
    page_size = max(limit, 100)
    with _client(url) as client:
        offset = 0
        while len(out) < limit:
            page = client.list_workflows(
                name=workflow_name(agent) if agent else None,
                status=dbos_statuses,
                sort_desc=True,
                limit=page_size,
                offset=offset,
            )
            for wf in page:
                if not str(wf.name).startswith(WORKFLOW_PREFIX):
                    continue  # the application's own workflows
                info = build_run_info(wf, None, _event(client, wf))
                if status is None or info.status == status:
                    out.append(info.to_json())
            if len(page) < page_size:
                break
            offset += page_size
    return out[:limit]


def get_run(url: str, run_id: str) -> dict[str, Any]:
    """One run as a JSON dict: status, steps with timings, pending approvals, usage, output, error."""
    with _client(url) as client:
        status = _status(client, run_id)
        steps = client.list_workflow_steps(run_id)
        return build_run_info(status, steps, _event(client, status)).to_json()


def cancel(url: str, run_id: str) -> None:
    """Cancel a run: it stops at its next step boundary (status ``cancelled``); a finished run is unchanged."""
    with _client(url) as client:
        _status(client, run_id)
        client.cancel_workflow(run_id)


def approve(url: str, run_id: str, tool_call_id: str, approved: bool = True, note: str | None = None) -> None:
    """Decide on a waiting call; the run continues in whichever process executes it (no process is needed here)."""
    with _client(url) as client:
        status = _status(client, run_id)
        key = decision_topic(run_id, status.status, _event(client, status), tool_call_id)
        message = Decision(approved=approved, note=note).model_dump(mode="json")
        client.send(run_id, message, key, idempotency_key=f"{run_id}/{key}")
