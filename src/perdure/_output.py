"""Structured output: one output tool per output type, validation, and partial validation for streaming."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import pydantic
import typing_extensions
from pydantic import BaseModel

from ._exceptions import UserError
from .models import ToolDefinition

__all__ = ["OutputMode", "OutputSchema"]

OutputMode = Literal["tool", "native"]
_DEFAULT_DESCRIPTION = "The final response which ends this conversation."


def _is_object_type(tp: Any) -> bool:
    # typing_extensions.is_typeddict also knows typing_extensions.TypedDict, which pydantic requires on 3.11.
    return (
        (inspect.isclass(tp) and issubclass(tp, BaseModel))
        or dataclasses.is_dataclass(tp)
        or typing_extensions.is_typeddict(tp)
    )


def _own_docstring(tp: Any) -> str | None:
    """The class's own docstring: not one inherited from BaseModel or dict, nor a generated dataclass one."""
    doc = vars(tp).get("__doc__") if inspect.isclass(tp) else None
    if not isinstance(doc, str) or not doc.strip():
        return None
    generated = f"{tp.__name__}("  # what @dataclass writes when the class has no docstring
    if dataclasses.is_dataclass(tp) and doc.startswith(generated):
        return None
    return inspect.cleandoc(doc)


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None) or re.sub(r"\W+", "_", str(tp))
    return re.sub(r"\W+", "_", name).strip("_") or "output"


@dataclass
class OutputTool:
    """One output type and the tool the model calls to return it."""

    name: str
    output_type: Any
    wrapped: bool
    adapter: pydantic.TypeAdapter[Any]
    definition: ToolDefinition

    def validate_args(self, args: dict[str, Any] | str, *, partial: bool = False) -> Any:
        flag: Literal["trailing-strings"] | bool = "trailing-strings" if partial else False
        if isinstance(args, str):
            value = self.adapter.validate_json(args or "{}", experimental_allow_partial=flag)
        else:
            value = self.adapter.validate_python(args, experimental_allow_partial=flag)
        if self.wrapped:
            return getattr(value, "response", value)
        return value


class OutputSchema:
    """What the model may answer with, built from ``output_type``."""

    def __init__(self, output_type: Any, *, mode: OutputMode = "tool") -> None:
        members: list[Any] = list(output_type) if isinstance(output_type, list | tuple) else [output_type]
        if not members:
            raise UserError("output_type must name at least one type")
        flat: list[Any] = []
        for m in members:
            # `A | B` of object types is treated as a list: one output tool each.
            if get_origin(m) in (typing.Union, types.UnionType) and all(
                _is_object_type(a) or a is str for a in get_args(m)
            ):
                flat.extend(get_args(m))
            else:
                flat.append(m)
        self.allow_text = str in flat
        structured = [m for m in flat if m is not str]
        self.mode: OutputMode = mode
        self.tools: list[OutputTool] = []
        if mode == "native" and (len(structured) != 1 or self.allow_text):
            raise UserError("output_mode='native' needs exactly one structured output type (not str, not a union)")
        for tp in structured:
            name = "final_result" if len(structured) == 1 else f"final_result_{_type_name(tp)}"
            self.tools.append(self._make_tool(name, tp))
        if len({t.name for t in self.tools}) != len(self.tools):
            raise UserError(f"output types {structured!r} have clashing names; give each a distinct class name")
        self.output_type = output_type

    @staticmethod
    def _make_tool(name: str, tp: Any) -> OutputTool:
        wrapped = not _is_object_type(tp)
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
                pydantic.create_model("Wrapped", response=(tp, ...)) if wrapped else tp
            )
            schema = adapter.json_schema()
        except Exception as e:
            raise UserError(f"output_type {tp!r} has no JSON schema ({e}); use a pydantic model or a dataclass") from e
        schema.pop("title", None)
        doc = None if wrapped else _own_docstring(tp)
        if doc:
            schema.pop("description", None)  # it is the tool's description already
        definition = ToolDefinition(name, doc or _DEFAULT_DESCRIPTION, schema, "output")
        return OutputTool(name, tp, wrapped, adapter, definition)

    @property
    def tool_definitions(self) -> list[ToolDefinition]:
        return [] if self.mode == "native" else [t.definition for t in self.tools]

    @property
    def native_definition(self) -> ToolDefinition | None:
        return self.tools[0].definition if self.mode == "native" else None

    def tool(self, name: str) -> OutputTool | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tools]
