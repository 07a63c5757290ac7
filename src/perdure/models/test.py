"""``TestModel``: calls every tool once with arguments made from its schema, then answers — offline.

::

    agent = Agent("test", name="demo")          # or Agent(TestModel(custom_output_text="done"))
    result = agent.run_sync("hi")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from ..messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from . import Model, ModelRequestParameters, ModelSettings
from .function import estimate_usage

__all__ = ["TestModel"]


class TestModel(Model):
    """A scripted model for tests.

    First request: one call of each function tool in ``call_tools`` (``"all"`` by default) with arguments
    generated from its JSON schema. Next request: the output — ``custom_output_text``, or
    ``custom_output_args`` for an output tool, or a JSON summary of the tool results; structured output is
    generated from the schema.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        call_tools: Sequence[str] | Literal["all"] = "all",
        custom_output_text: str | None = None,
        custom_output_args: Any = None,
        seed: int = 0,
        model_name: str = "test",
    ) -> None:
        self.call_tools = call_tools
        self.custom_output_text = custom_output_text
        self.custom_output_args = custom_output_args
        self.seed = seed
        self._name = model_name
        self.last_params: ModelRequestParameters | None = None

    @property
    def model_name(self) -> str:
        return self._name

    @property
    def system(self) -> str:
        return "test"

    async def request(
        self, messages: list[ModelMessage], settings: ModelSettings | None, params: ModelRequestParameters
    ) -> ModelResponse:
        self.last_params = params
        response = self._respond(messages, params)
        return response.model_copy(update={"usage": estimate_usage(messages, response), "model_name": self._name})

    def _respond(self, messages: list[ModelMessage], params: ModelRequestParameters) -> ModelResponse:
        last = messages[-1] if messages else None
        returned = [p for p in last.parts if isinstance(p, ToolReturnPart)] if isinstance(last, ModelRequest) else []
        retries = [p for p in last.parts if p.part_kind == "retry-prompt"] if isinstance(last, ModelRequest) else []
        first_turn = sum(1 for m in messages if isinstance(m, ModelResponse)) == 0
        tools = [t for t in params.function_tools if self.call_tools == "all" or t.name in self.call_tools]
        if first_turn and tools:
            return ModelResponse(
                parts=[
                    ToolCallPart(
                        tool_name=t.name,
                        args=self._generate(t.parameters_json_schema, t.parameters_json_schema),
                        tool_call_id=f"pyd_{t.name}_{i}",
                    )
                    for i, t in enumerate(tools)
                ]
            )
        if retries and retries[0].tool_name and any(t.name == retries[0].tool_name for t in params.function_tools):
            t = next(t for t in params.function_tools if t.name == retries[0].tool_name)
            return ModelResponse(
                parts=[
                    ToolCallPart(
                        tool_name=t.name,
                        args=self._generate(t.parameters_json_schema, t.parameters_json_schema),
                        tool_call_id=f"pyd_{t.name}_retry",
                    )
                ]
            )
        if params.output_tools:
            tool = params.output_tools[0]
            args = self.custom_output_args
            if args is None:
                args = self._generate(tool.parameters_json_schema, tool.parameters_json_schema)
            elif "response" in tool.parameters_json_schema.get("properties", {}) and not (
                isinstance(args, dict) and "response" in args
            ):
                args = {"response": args}
            return ModelResponse(parts=[ToolCallPart(tool_name=tool.name, args=args, tool_call_id="pyd_final")])
        if params.native_output is not None:
            args = self.custom_output_args or self._generate(
                params.native_output.parameters_json_schema, params.native_output.parameters_json_schema
            )
            return ModelResponse(parts=[TextPart(content=json.dumps(args))])
        if self.custom_output_text is not None:
            return ModelResponse(parts=[TextPart(content=self.custom_output_text)])
        if returned:
            summary = {p.tool_name: p.content for p in returned}
            return ModelResponse(parts=[TextPart(content=json.dumps(summary, default=str))])
        return ModelResponse(parts=[TextPart(content="success (no tool calls)")])

    def _generate(self, schema: dict[str, Any], root: dict[str, Any]) -> Any:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return self._generate(root.get("$defs", {}).get(name, {}), root)
        if "default" in schema:
            return schema["default"]
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
                return self._generate(options[0], root)
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            props = schema.get("properties", {})
            required = schema.get("required", list(props))
            return {k: self._generate(v, root) for k, v in props.items() if k in required}
        if kind == "array":
            items = schema.get("items")
            return [self._generate(items, root)] if isinstance(items, dict) else []
        return {
            "string": "a",
            "integer": self.seed,
            "number": float(self.seed),
            "boolean": False,
            "null": None,
        }.get(kind, "a")
