"""Encoding what the journal stores: run inputs and step results, as JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pydantic

from .._loop import RunInput
from .._ops import Decision, ModelStep, Step, StepResult, ToolStep
from .._tools import ToolOutcome
from ..messages import ModelMessagesTypeAdapter, ModelResponse
from ..usage import UsageLimits

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


def encode_input(run: RunInput) -> str:
    return json.dumps(
        {
            "prompt": run.prompt,
            "message_history": ModelMessagesTypeAdapter.dump_python(run.message_history, mode="json"),
            "usage_limits": dataclasses.asdict(run.usage_limits) if run.usage_limits else None,
            "model_settings": run.model_settings,
            "model_name": run.model_name,
        },
        separators=(",", ":"),
    )


def decode_input(run_id: str, text: str) -> RunInput:
    data = json.loads(text)
    limits = data.get("usage_limits")
    return RunInput(
        prompt=data.get("prompt"),
        run_id=run_id,
        message_history=ModelMessagesTypeAdapter.validate_python(data.get("message_history") or []),
        usage_limits=UsageLimits(**limits) if limits else None,
        model_settings=data.get("model_settings"),
        model_name=data.get("model_name"),
    )


def encode_result(result: StepResult) -> str:
    return result.model_dump_json()


def decode_result(step: Step, text: str) -> StepResult:
    if isinstance(step, ModelStep):
        return ModelResponse.model_validate_json(text)
    if isinstance(step, ToolStep):
        return ToolOutcome.model_validate_json(text)
    return Decision.model_validate_json(text)


def encode_output(output: Any) -> str:
    return _ANY.dump_json(output).decode()
