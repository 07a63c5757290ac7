"""Tools: JSON schemas from signatures and docstrings, argument validation, and execution."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from ._context import RunContext
from ._docstrings import parse_docstring
from ._exceptions import UserError
from .models import ToolDefinition

__all__ = ["SideEffects", "Tool"]

SideEffects = Literal["at_least_once", "at_most_once"]
"""How a durable engine treats a call interrupted by a crash.

``at_least_once`` (default): the call runs again on resume; pass ``ctx.idempotency_key`` to outside APIs.
``at_most_once``: never run again; the model is told the outcome is unknown (or the run waits for a human).
"""


def _is_run_context(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return getattr(annotation, "__origin__", annotation) is RunContext


def _has_description(annotation: Any) -> bool:
    """``Annotated[int, Field(description=...)]``: that description wins over the docstring's."""
    if get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in get_args(annotation)[1:])


def _takes_ctx(fn: Callable[..., Any], hints: dict[str, Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return False
    return _is_run_context(hints.get(params[0].name, params[0].annotation))


class ToolOutcome(BaseModel):
    """The recorded result of one tool call: what the model is sent, tagged by kind.

    ``return``: ``value`` is the tool's return value in JSON form. ``retry``: ``message`` goes back to the
    model. ``error``: the tool raised; the run fails. ``unknown``: an at-most-once call was interrupted by a
    crash. ``denied``: a human denied the call.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: Literal["return", "retry", "error", "unknown", "denied"]
    value: Any = None
    message: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    """``error``: the tool's formatted traceback, recorded so ``runs show`` can point at the user's line."""


class Tool:
    """A function the model can call.

    Built by ``@agent.tool`` / ``@agent.tool_plain``, or directly: ``Agent(..., tools=[Tool(fn)])``.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        takes_ctx: bool | None = None,
        name: str | None = None,
        description: str | None = None,
        retries: int | None = None,
        requires_approval: bool = False,
        side_effects: SideEffects = "at_least_once",
        on_unknown: Literal["tell_model", "wait"] = "tell_model",
    ) -> None:
        if side_effects not in ("at_least_once", "at_most_once"):
            raise UserError(f"side_effects must be 'at_least_once' or 'at_most_once', not {side_effects!r}")
        if on_unknown not in ("tell_model", "wait"):
            raise UserError(f"on_unknown must be 'tell_model' or 'wait', not {on_unknown!r}")
        self.function = function
        self.on_unknown = on_unknown
        chosen = name or getattr(function, "__name__", None)
        if not isinstance(chosen, str) or not chosen:
            raise UserError(f"tool {function!r} has no __name__; give it one with Tool(..., name=...)")
        self.name = chosen
        self.retries = retries
        self.requires_approval = requires_approval
        self.side_effects: SideEffects = side_effects
        # A callable object counts by its __call__ (inspect.iscoroutinefunction does not look there on 3.11).
        target = function if inspect.isroutine(function) else type(function).__call__
        self.is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(target)
        try:
            hints = get_type_hints(target, include_extras=True)  # keep Annotated[..., Field(...)]
        except Exception as e:
            raise UserError(f"tool {self.name!r}: cannot resolve its type hints ({e})") from e
        self.takes_ctx = _takes_ctx(function, hints) if takes_ctx is None else takes_ctx
        summary, param_docs = parse_docstring(function.__doc__)
        self.description = description if description is not None else summary
        self._param_names: list[str] = []
        self._var_kwargs = False
        fields: dict[str, Any] = {}
        params = list(inspect.signature(function).parameters.values())
        if self.takes_ctx:
            if not params:
                raise UserError(f"tool {self.name!r} takes a RunContext but has no parameters")
            first = hints.get(params[0].name, params[0].annotation)
            if first is not params[0].empty and not _is_run_context(first):
                # Without this check the tool would silently receive the context as its first argument.
                raise UserError(
                    f"tool {self.name!r}: the first parameter of a tool that takes a context must be "
                    f"`ctx: RunContext[...]` (use @agent.tool_plain for a tool without one)"
                )
            params = params[1:]
        for p in params:
            if p.kind is p.VAR_POSITIONAL:
                raise UserError(f"tool {self.name!r}: *{p.name} is not supported; name every parameter")
            if p.kind is p.VAR_KEYWORD:
                self._var_kwargs = True
                continue
            ann = hints.get(p.name, Any)
            if _is_run_context(ann):
                raise UserError(
                    f"tool {self.name!r}: a RunContext parameter needs @agent.tool (not tool_plain), "
                    "and must come first"
                )
            default = ... if p.default is p.empty else p.default
            doc = param_docs.get(p.name)
            described = doc is not None and not _has_description(ann)
            fields[p.name] = (ann, Field(default, description=doc) if described else Field(default))
            self._param_names.append(p.name)
        config = ConfigDict(extra="allow" if self._var_kwargs else "forbid")
        try:
            self._args_model: type[BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
                f"{self.name}_args", __config__=config, **fields
            )  # ^ mypy cannot match **fields (a dict of (type, FieldInfo)) against create_model's overloads
            schema = self._args_model.model_json_schema()
        except pydantic.PydanticUserError as e:  # PydanticSchemaGenerationError / InvalidForJsonSchema too
            raise UserError(
                f"tool {self.name!r}: its parameters have no JSON schema ({e.message}); annotate them with "
                "JSON-able types, dataclasses, pydantic models or typing_extensions.TypedDict"
            ) from e
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        schema.setdefault("properties", {})
        self.parameters_json_schema: dict[str, Any] = schema
        ret = hints.get("return", Any)
        try:
            self._return_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
                Any if ret is None or ret is type(None) else ret
            )
        except pydantic.PydanticUserError as e:
            raise UserError(
                f"tool {self.name!r}: its return type {ret!r} cannot be serialized to JSON ({e.message}); "
                "return a JSON-able value, a dataclass or a pydantic model"
            ) from e
        self._returns_any = ret is Any or "return" not in hints

    @property
    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters_json_schema, "function")

    def validate_args(self, args: dict[str, Any]) -> BaseModel:
        """Validate arguments; raises ``pydantic.ValidationError``."""
        return self._args_model.model_validate(args)

    async def call(self, validated: BaseModel, ctx: RunContext[Any]) -> Any:
        kwargs = {name: getattr(validated, name) for name in self._param_names}
        if self._var_kwargs and validated.model_extra:
            kwargs.update(validated.model_extra)
        args: tuple[Any, ...] = (ctx,) if self.takes_ctx else ()
        if self.is_async:
            return await self.function(*args, **kwargs)
        result = await asyncio.to_thread(self.function, *args, **kwargs)
        if inspect.isawaitable(result):  # an object with an async __call__, or a function returning a coroutine
            return await result
        return result

    def dump_result(self, value: Any) -> Any:
        """The return value in JSON form; raises ``UserError`` naming the tool and type if it can't be."""
        try:
            if self._returns_any:
                return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")
            return self._return_adapter.dump_python(value, mode="json")
        except Exception as e:
            raise UserError(
                f"tool {self.name!r} returned a {type(value).__name__}, which cannot be serialized to JSON "
                f"({e.__class__.__name__}: {e}); return a JSON-able value, a dataclass or a pydantic model"
            ) from e

    def load_result(self, value: Any) -> Any:
        """The recorded JSON value back as the tool's declared return type (a model comes back a model)."""
        if self._returns_any:
            return value
        try:
            return self._return_adapter.validate_python(value)
        except pydantic.ValidationError:
            return value
