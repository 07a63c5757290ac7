"""The one record codec: how every engine encodes what it persists (run inputs, step results, outputs).

The JSON shapes are compatibility data: journals, DBOS step outputs, Temporal histories and Prefect results
written by earlier releases decode with these functions. Add fields; never rename or drop one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pydantic

from .._loop import AgentRunResult, RunInput
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep
from .._tools import ToolOutcome
from ..messages import ModelMessagesTypeAdapter, ModelResponse, UserContent
from ..usage import Usage, UsageLimits

__all__ = [
    "decode_input",
    "decode_result",
    "decode_run_result",
    "encode_input",
    "encode_output",
    "encode_result",
    "encode_run_result",
    "input_from_dict",
    "input_to_dict",
    "output_adapter",
]

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)
_CONTENT: pydantic.TypeAdapter[list[UserContent]] = pydantic.TypeAdapter(list[UserContent])


def input_to_dict(run: RunInput) -> dict[str, Any]:
    """A run's input as JSON-able data (without its id: the engine keys the run by it)."""
    data = {
        "prompt": run.prompt,
        "message_history": ModelMessagesTypeAdapter.dump_python(run.message_history, mode="json"),
        "usage_limits": dataclasses.asdict(run.usage_limits) if run.usage_limits else None,
        "model_settings": run.model_settings,
        "model_name": run.model_name,
    }
    if run.content is not None:  # a prompt with files: recorded once, here (a step records only its own result)
        data["content"] = _CONTENT.dump_python(run.content, mode="json")
    return data


def input_from_dict(run_id: str, data: dict[str, Any]) -> RunInput:
    limits = data.get("usage_limits")
    return RunInput(
        prompt=data.get("prompt"),
        run_id=run_id,
        message_history=ModelMessagesTypeAdapter.validate_python(data.get("message_history") or []),
        usage_limits=UsageLimits(**limits) if limits else None,
        model_settings=data.get("model_settings"),
        model_name=data.get("model_name"),
        content=_CONTENT.validate_python(data["content"]) if data.get("content") is not None else None,
    )


def encode_input(run: RunInput) -> str:
    return json.dumps(input_to_dict(run), separators=(",", ":"))


def decode_input(run_id: str, text: str) -> RunInput:
    return input_from_dict(run_id, json.loads(text))


def encode_result(result: StepResult) -> str:
    if isinstance(result, ToolOutcome) and result.traceback is None:
        return result.model_dump_json(exclude={"traceback"})  # the bytes earlier releases wrote
    return result.model_dump_json()


def decode_result(step: Step, text: str) -> StepResult:
    if isinstance(step, ModelStep):
        return ModelResponse.model_validate_json(text)
    if isinstance(step, ToolStep):
        return ToolOutcome.model_validate_json(text)
    return Decision.model_validate_json(text)


def encode_output(output: Any) -> str:
    return _ANY.dump_json(output).decode()


def output_adapter(output_type: Any) -> pydantic.TypeAdapter[Any]:
    """Validates a recorded output back into the agent's output type (a model comes back as that model)."""
    members = list(output_type) if isinstance(output_type, list | tuple) else [output_type]
    if len(members) == 1:
        return pydantic.TypeAdapter(members[0])
    from typing import Union

    union: Any = Union[tuple(members)]  # noqa: UP007 - a union built at runtime
    return pydantic.TypeAdapter(union)


def encode_run_result(result: AgentRunResult[Any]) -> dict[str, Any]:
    """A finished run's result, for engines that return it across a process boundary (a workflow's result)."""
    return {
        "format": 1,
        "output": _ANY.dump_python(result.output, mode="json"),
        "messages": ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json"),
        "new_from": len(result.all_messages()) - len(result.new_messages()),
        "usage": dict(result.usage().__dict__),
    }


def decode_run_result(run_id: str, data: dict[str, Any], adapter: pydantic.TypeAdapter[Any]) -> AgentRunResult[Any]:
    usage = {k: v for k, v in (data.get("usage") or {}).items() if k in Usage.__dataclass_fields__}
    return AgentRunResult(
        output=adapter.validate_python(data.get("output")),
        run_id=run_id,
        _messages=ModelMessagesTypeAdapter.validate_python(data.get("messages") or []),
        _new_from=int(data.get("new_from") or 0),
        _usage=Usage(**usage),
    )
