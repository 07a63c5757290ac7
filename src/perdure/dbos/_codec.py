"""How a run's input and its failure are stored in DBOS (the names are in ``_names``; step results and a finished
run's result use the shared codec, ``perdure.durable.codec``: the same JSON shapes this adapter always wrote)."""

from __future__ import annotations

import json
from typing import Any

from .._exceptions import PerdureError, error_from_record
from .._loop import RunInput
from ..durable.codec import input_from_dict, input_to_dict
from ._names import FORMAT

__all__ = ["RunFailed", "decode_input", "encode_input", "error_record", "run_error"]


def encode_input(run: RunInput, fingerprint: str, trace_context: dict[str, str] | None) -> dict[str, Any]:
    """The workflow's one argument: the run's input, with the agent's fingerprint and the run's trace."""
    return {"format": FORMAT, **input_to_dict(run), "fingerprint": fingerprint, "trace_context": trace_context}


def decode_input(run_id: str, data: dict[str, Any]) -> RunInput:
    return input_from_dict(run_id, data)


class RunFailed(Exception):
    """How a failed run leaves its DBOS workflow: the perdure error as a JSON record, in a picklable shape.

    In the process that ran it, ``original`` is the exception itself (with its traceback and cause); elsewhere
    the error is rebuilt from the record.
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
