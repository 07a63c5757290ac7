"""perdure's exceptions.

The hierarchy::

    PerdureError                      root of everything perdure raises on purpose
    ├── UserError                     the developer misused perdure: fix the code or configuration
    │   └── MissingExtra (ImportError) an optional extra is not installed: the message has the pip command
    ├── AgentRunError                 a run failed; the run keeps its journal and this error
    │   ├── UnexpectedModelBehavior   the model kept producing invalid output past the retry budget
    │   ├── UsageLimitExceeded        a UsageLimits bound was hit
    │   ├── ModelHTTPError            the provider answered with an error (``transient``: would a retry help)
    │   ├── ToolError                 a tool raised; the run failed at that step
    │   ├── ApprovalRequired          a tool needs a human decision and the engine cannot wait (plain runs)
    │   ├── RunCancelled              the run was cancelled
    │   └── NonDeterminismError       replay no longer matches the recorded steps
    ├── RunInProgress                 the run is executing in a live process right now
    └── RunWaiting                    the run is suspended, waiting for a human decision (not a failure)

``ModelRetry`` is not an error of perdure's: tools and output validators raise it to send a message back to
the model and ask it to try again.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any
from urllib.parse import unquote

__all__ = [
    "AgentRunError",
    "ApprovalRequired",
    "MissingExtra",
    "ModelHTTPError",
    "ModelRetry",
    "NonDeterminismError",
    "PerdureError",
    "RunCancelled",
    "RunInProgress",
    "RunWaiting",
    "ToolError",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
]


class ModelRetry(Exception):  # no Error suffix: the name users know from other agent frameworks
    """Raise in a tool or output validator to send ``message`` back to the model and ask it to retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PerdureError(Exception):
    """Root of every error perdure raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_record(self) -> dict[str, Any]:
        """A JSON-able description, so the error can cross a process boundary (journal, activity)."""
        return {"type": type(self).__name__, "message": self.message}


class UserError(PerdureError):
    """The developer misused perdure; the message says what is wrong and how to fix it."""


class MissingExtra(UserError, ImportError):
    """An optional dependency is missing; the message holds the exact install command."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module!r} is not installed; it comes with perdure's {extra!r} extra: {install_command(extra)}"
        )
        self.extra = extra
        self.name = module


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to this perdure, installed from where this one was installed from.

    perdure is not on a package index: it is installed from a checkout or a built wheel
    (``pip install "perdure[openai] @ file:///path/to/perdure"``), and pip records that source in the
    distribution's ``direct_url.json`` (PEP 610). ``pip install "perdure[extra]"`` alone would fail.
    """
    requirement = f'"perdure[{extra}]"'
    try:
        source = json.loads(importlib.metadata.distribution("perdure").read_text("direct_url.json") or "null")
    except Exception:  # not installed as a distribution, or a record pip did not write: the plain form
        source = None
    if not isinstance(source, dict) or not isinstance(source.get("url"), str):
        return f"pip install {requirement}"
    url: str = source["url"]
    if isinstance(source.get("dir_info"), dict) and source["dir_info"].get("editable"):
        return f'pip install -e "{unquote(url.removeprefix("file://"))}[{extra}]"'
    vcs = source.get("vcs_info")
    if isinstance(vcs, dict):
        revision = vcs.get("requested_revision") or vcs.get("commit_id")
        url = f"{vcs.get('vcs', 'git')}+{url}" + (f"@{revision}" if revision else "")
    return f'pip install "perdure[{extra}] @ {url}"'


class AgentRunError(PerdureError):
    """A run failed. Durable engines keep the run's journal and record this error."""


class UnexpectedModelBehavior(AgentRunError):
    """The model kept answering with something invalid past the retry budget."""

    def __init__(self, message: str, body: str | None = None) -> None:
        super().__init__(message)
        self.body = body

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "body": self.body}


class UsageLimitExceeded(AgentRunError):
    """A bound set with ``UsageLimits`` was reached."""


class ModelHTTPError(AgentRunError):
    """The model provider answered with an error.

    ``transient`` is True for timeouts, 429 and 5xx (retried with backoff, bounded), False for errors that
    retrying cannot fix (400, 401, 403, 404): those fail the run at once.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        model_name: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.model_name = model_name
        self.transient = transient
        self.retry_after = retry_after

    def to_record(self) -> dict[str, Any]:
        fields = {"status_code": self.status_code, "model_name": self.model_name}
        return {**super().to_record(), **fields, "transient": self.transient}


class ToolError(AgentRunError):
    """A tool raised an exception (other than ``ModelRetry``); the run failed at that step."""

    def __init__(self, message: str, *, tool_name: str, error_type: str) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.error_type = error_type

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "tool_name": self.tool_name, "error_type": self.error_type}


class ApprovalRequired(AgentRunError):
    """A tool declared ``requires_approval=True`` was called in a run whose engine cannot wait for a human.

    Plain ``agent.run()`` raises this; durable engines suspend the run instead (status ``waiting``).
    """

    def __init__(self, message: str, *, pending: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.pending = pending


class RunCancelled(AgentRunError):
    """The run was cancelled; it stopped at a step boundary."""


class NonDeterminismError(AgentRunError):
    """On replay the agent asked for a step that does not match what the run recorded.

    The agent's code changed in a way that changes the path of runs already in flight. perdure never
    silently re-executes on a mismatch: finish those runs with the old code, or start them again.
    """

    def __init__(self, *, run_id: str, step_key: str, recorded: str, requested: str) -> None:
        super().__init__(
            f"run {run_id!r} no longer replays: at step {step_key!r} the journal recorded {recorded}, "
            f"but the agent now asks for {requested}. The agent's code changed in a way that changes the "
            "path of this run; finish it with the code that started it, or start it again under a new run id."
        )
        self.run_id = run_id
        self.step_key = step_key
        self.recorded = recorded
        self.requested = requested

    def to_record(self) -> dict[str, Any]:
        fields = {"run_id": self.run_id, "step_key": self.step_key}
        return {**super().to_record(), **fields, "recorded": self.recorded, "requested": self.requested}


class RunInProgress(PerdureError):
    """The run is being executed by a live process right now; it is never executed twice at once."""

    def __init__(self, run_id: str, owner: str | None = None) -> None:
        where = f" by {owner}" if owner else ""
        super().__init__(
            f"run {run_id!r} is being executed{where} right now; wait for it (durable.wait(run_id)) "
            "instead of starting it again"
        )
        self.run_id = run_id
        self.owner = owner


class RunWaiting(PerdureError):
    """The run is suspended until a human decides on ``pending`` (no process is held while it waits).

    Decide with ``approve(run_id, tool_call_id, approved=..., note=...)`` from any process (or
    ``perdure approve``); then ``resume(run_id)`` or a worker continues the run.
    """

    def __init__(self, run_id: str, pending: list[dict[str, Any]]) -> None:
        calls = ", ".join(f"{p['tool_name']}({p['tool_call_id']})" for p in pending) or "nothing"
        super().__init__(f"run {run_id!r} is waiting for a decision on: {calls}")
        self.run_id = run_id
        self.pending = pending


_BY_NAME: dict[str, type[PerdureError]] = {
    c.__name__: c
    for c in (
        PerdureError,
        UserError,
        AgentRunError,
        UnexpectedModelBehavior,
        UsageLimitExceeded,
        RunCancelled,
        ApprovalRequired,
        NonDeterminismError,
    )
}


def error_from_record(record: dict[str, Any]) -> AgentRunError:
    """Rebuild a run error recorded by ``to_record`` (in another process, maybe days ago)."""
    kind = record.get("type", "AgentRunError")
    message = str(record.get("message", ""))
    if kind == "ModelHTTPError":
        return ModelHTTPError(
            message,
            status_code=record.get("status_code"),
            model_name=record.get("model_name"),
            transient=bool(record.get("transient")),
        )
    if kind == "ToolError":
        return ToolError(
            message, tool_name=str(record.get("tool_name", "")), error_type=str(record.get("error_type", ""))
        )
    if kind == "UnexpectedModelBehavior":
        return UnexpectedModelBehavior(message, body=record.get("body"))
    if kind == "NonDeterminismError" and all(
        isinstance(record.get(k), str) for k in ("run_id", "step_key", "recorded", "requested")
    ):
        return NonDeterminismError(
            run_id=record["run_id"],
            step_key=record["step_key"],
            recorded=record["recorded"],
            requested=record["requested"],
        )
    cls = _BY_NAME.get(kind)
    if cls is NonDeterminismError:  # a record from before the fields were recorded
        err = AgentRunError.__new__(NonDeterminismError)
        AgentRunError.__init__(err, message)
        return err
    if cls is not None and issubclass(cls, AgentRunError) and cls is not ApprovalRequired:
        return cls(message)
    return AgentRunError(message)
