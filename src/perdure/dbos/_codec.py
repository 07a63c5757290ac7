"""What a perdure run stores in DBOS's system database, and the names it stores it under.

Every name here is persisted compatibility data (pinned by a test): renaming Python code never changes them.

=========================  ==================================================================================
DBOS object                perdure content
=========================  ==================================================================================
workflow ``perdure:<agent>``  one run; its workflow id is the run id; input: the run's JSON input (prompt,
                           history, limits...) once; output: the result (output, messages, usage)
step ``turn/N/model``      a model request; output ``{"d": describe, "r": ModelResponse JSON}``
step ``turn/N/tool/<id>``  a tool call; output ``{"d": describe, "r": ToolOutcome JSON}``
step ``.../<id>/started``  an at-most-once call is about to run; output ``{"d": describe}``
step ``turn/N/approval/<id>``  a call waits for a decision; output ``{"d": describe, "p": pending call}``
message, topic = wait key  the decision ``{"approved": bool, "note": str | None}`` (``DBOS.send``)
event ``perdure.status``   ``{"status": "waiting" | "running", "pending": [...]}`` while the run waits
=========================  ==================================================================================

Values are plain JSON types (dicts, lists, strings), so any DBOS serializer stores them and any process reads
them back without perdure's classes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pydantic

from .._exceptions import PerdureError, error_from_record
from .._loop import AgentRunResult, RunInput
from ..messages import ModelMessagesTypeAdapter
from ..usage import Usage, UsageLimits

WORKFLOW_PREFIX = "perdure:"
STATUS_EVENT = "perdure.status"
STARTED_SUFFIX = "/started"
FORMAT = 1

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


def workflow_name(agent_name: str) -> str:
    return f"{WORKFLOW_PREFIX}{agent_name}"


def agent_of(workflow: str) -> str | None:
    """The agent name of a perdure workflow name; None for any other workflow."""
    return workflow[len(WORKFLOW_PREFIX) :] if workflow.startswith(WORKFLOW_PREFIX) else None


def encode_input(run: RunInput, fingerprint: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "prompt": run.prompt,
        "message_history": ModelMessagesTypeAdapter.dump_python(run.message_history, mode="json"),
        "usage_limits": dataclasses.asdict(run.usage_limits) if run.usage_limits else None,
        "model_settings": dict(run.model_settings) if run.model_settings else None,
        "model_name": run.model_name,
        "fingerprint": fingerprint,
    }


def decode_input(run_id: str, data: dict[str, Any]) -> RunInput:
    limits = data.get("usage_limits")
    return RunInput(
        prompt=data.get("prompt"),
        run_id=run_id,
        message_history=ModelMessagesTypeAdapter.validate_python(data.get("message_history") or []),
        usage_limits=UsageLimits(**limits) if limits else None,
        model_settings=data.get("model_settings"),  # type: ignore[arg-type]  # a TypedDict, stored as JSON
        model_name=data.get("model_name"),
    )


def encode_result(result: AgentRunResult[Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "output": _ANY.dump_python(result.output, mode="json"),
        "messages": ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json"),
        "new_from": result._new_from,
        "usage": dict(result.usage().__dict__),
    }


def output_adapter(output_type: Any) -> pydantic.TypeAdapter[Any]:
    """Validates a recorded output back into the agent's output type (a model comes back a model)."""
    members = list(output_type) if isinstance(output_type, list | tuple) else [output_type]
    if len(members) == 1:
        return pydantic.TypeAdapter(members[0])
    from typing import Union

    union: Any = Union[tuple(members)]  # noqa: UP007 - a union built at runtime
    return pydantic.TypeAdapter(union)


def decode_result(run_id: str, data: dict[str, Any], adapter: pydantic.TypeAdapter[Any]) -> AgentRunResult[Any]:
    return AgentRunResult(
        adapter.validate_python(data["output"]),
        run_id,
        ModelMessagesTypeAdapter.validate_python(data["messages"]),
        int(data["new_from"]),
        Usage(**data["usage"]),
    )


class RunFailed(Exception):
    """How a failed run leaves its DBOS workflow: the perdure error as a JSON record, in a picklable shape.

    In the process that ran it, ``original`` is the exception itself (with its traceback); elsewhere the error
    is rebuilt from the record.
    """

    def __init__(self, record: str, original: BaseException | None = None) -> None:
        super().__init__(record)
        self.record = record
        self.original = original

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunFailed, (self.record,))

    @property
    def data(self) -> dict[str, Any]:
        """The record, under the attribute DBOS's portable serializer keeps (next to name and message)."""
        return self.as_record()

    def __str__(self) -> str:
        try:
            return str(json.loads(self.record).get("message", self.record))
        except ValueError:
            return self.record

    @classmethod
    def wrap(cls, error: BaseException) -> RunFailed:
        return cls(json.dumps(error_record(error)), error)

    def to_error(self) -> PerdureError:
        if isinstance(self.original, PerdureError):
            return self.original
        return error_from_record(self.as_record())

    def as_record(self) -> dict[str, Any]:
        try:
            record = json.loads(self.record)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return {"type": "AgentRunError", "message": self.record}
        return record


def error_record(error: BaseException | None) -> dict[str, Any] | None:
    """The JSON record of an error that ended a run or a step (ours, or anything else)."""
    if error is None:
        return None
    if isinstance(error, RunFailed):
        return error.as_record()
    if isinstance(error, PerdureError):
        return error.to_record()
    if type(error).__name__ == "PortableWorkflowError":  # DBOS's portable serializer: name, message, data
        data = getattr(error, "data", None)
        if getattr(error, "name", None) == "RunFailed" and isinstance(data, dict) and "type" in data:
            return dict(data)
        return {"type": str(getattr(error, "name", "AgentRunError")), "message": str(error)}
    return {"type": type(error).__name__, "message": f"{type(error).__name__}: {error}"}


def run_error(error: BaseException) -> PerdureError:
    """The perdure error for the error a run's workflow ended with (recorded by any process)."""
    if isinstance(error, RunFailed):
        return error.to_error()
    if isinstance(error, PerdureError):
        return error
    return error_from_record(error_record(error) or {})
