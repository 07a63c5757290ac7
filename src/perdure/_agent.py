"""``Agent``: an agent's definition (model, instructions, tools, output type) and plain, non-durable runs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, Literal, overload

from typing_extensions import TypeVar

from ._engine import InlineEngine, new_run_id
from ._exceptions import ApprovalRequired, ToolError, UserError
from ._loop import AgentLoop, AgentRunResult, Prompt, RunInput, drive, split_prompt
from ._output import OutputMode, OutputSchema
from ._spec import AgentSpec
from ._streaming import StreamedRunResult, run_streamed
from ._tools import SideEffects, Tool
from .messages import ModelMessage
from .models import Model, ModelSettings, RetryConfig, infer_model
from .usage import UsageLimits

__all__ = ["Agent"]

# The defaults make a bare `Agent(model)` an `Agent[None, str]` for type checkers.
DepsT = TypeVar("DepsT", default=None)
OutputT = TypeVar("OutputT", default=str)
F = TypeVar("F", bound=Callable[..., Any])

Instructions = str | Callable[..., str | Awaitable[str | None] | None]


class Agent(Generic[DepsT, OutputT]):
    """An agent: a model, instructions, tools and an output type.

    ::

        agent = Agent("openai:gpt-4.1-mini", name="support", instructions="Be brief.")

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            \"\"\"Add two numbers.\"\"\"
            return a + b

        result = agent.run_sync("What is 2 + 3?")
        print(result.output)

    ``agent.run()`` is not durable; wrap the agent in ``DurableAgent`` (or an engine adapter) for runs that
    survive crashes.
    """

    # Overloads only tell type checkers what OutputT is: the type given, str by default, or Any for a
    # list/union of types (which a type checker cannot turn into one type).
    @overload
    def __init__(
        self,
        model: Model | str | None = None,
        *,
        name: str | None = None,
        instructions: Instructions | Sequence[Instructions] | None = None,
        system_prompt: str | Sequence[str] = (),
        deps_type: type[DepsT] = ...,
        output_type: type[OutputT],
        output_mode: OutputMode = "tool",
        tools: Sequence[Tool | Callable[..., Any]] = (),
        retries: int = 1,
        output_retries: int | None = None,
        model_settings: ModelSettings | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Agent[DepsT, str],
        model: Model | str | None = None,
        *,
        name: str | None = None,
        instructions: Instructions | Sequence[Instructions] | None = None,
        system_prompt: str | Sequence[str] = (),
        deps_type: type[DepsT] = ...,
        output_mode: OutputMode = "tool",
        tools: Sequence[Tool | Callable[..., Any]] = (),
        retries: int = 1,
        output_retries: int | None = None,
        model_settings: ModelSettings | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Agent[DepsT, Any],
        model: Model | str | None = None,
        *,
        name: str | None = None,
        instructions: Instructions | Sequence[Instructions] | None = None,
        system_prompt: str | Sequence[str] = (),
        deps_type: type[DepsT] = ...,
        output_type: Any,
        output_mode: OutputMode = "tool",
        tools: Sequence[Tool | Callable[..., Any]] = (),
        retries: int = 1,
        output_retries: int | None = None,
        model_settings: ModelSettings | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None: ...
    def __init__(
        self,
        model: Model | str | None = None,
        *,
        name: str | None = None,
        instructions: Instructions | Sequence[Instructions] | None = None,
        system_prompt: str | Sequence[str] = (),
        deps_type: Any = type(None),
        output_type: Any = str,
        output_mode: OutputMode = "tool",
        tools: Sequence[Tool | Callable[..., Any]] = (),
        retries: int = 1,
        output_retries: int | None = None,
        model_settings: ModelSettings | None = None,
        retry_config: RetryConfig | None = None,
    ) -> None:
        if model is not None and not isinstance(model, Model | str):
            raise UserError(f"model must be a Model or a model string like 'openai:gpt-4.1-mini', not {model!r}")
        if retries < 0:
            raise UserError("retries must be >= 0")
        self.model = model
        self.name = name
        self.deps_type: type[Any] = deps_type
        self.output_type = output_type
        self.retries = retries
        self.output_retries = retries if output_retries is None else output_retries
        self.model_settings = model_settings
        self.retry_config = retry_config or RetryConfig()
        if instructions is None:
            self._instructions: list[Instructions] = []
        elif isinstance(instructions, str) or callable(instructions):
            self._instructions = [instructions]
        else:
            self._instructions = list(instructions)
        self._system_prompts: list[str] = [system_prompt] if isinstance(system_prompt, str) else list(system_prompt)
        self._output = OutputSchema(output_type, mode=output_mode)
        self._output_validators: list[Callable[..., Any]] = []
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self._add_tool(t if isinstance(t, Tool) else Tool(t))

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model_name!r})"

    @property
    def model_name(self) -> str | None:
        if self.model is None:
            return None
        return self.model if isinstance(self.model, str) else self.model.model_name

    @property
    def tools(self) -> dict[str, Tool]:
        """The agent's function tools by name (read-only view)."""
        return dict(self._tools)

    @property
    def output_schema(self) -> OutputSchema:
        """How the agent's output is asked for and validated (one output tool per type, or native)."""
        return self._output

    def _add_tool(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise UserError(f"the agent already has a tool named {tool.name!r}; tool names must be unique")
        if tool.name in self._output.names:
            raise UserError(f"tool name {tool.name!r} clashes with an output tool; rename the tool")
        self._tools[tool.name] = tool

    # --- decorators -------------------------------------------------------------------------------------

    @overload
    def tool(self, fn: F, /) -> F: ...
    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        requires_approval: bool = False,
        side_effects: SideEffects = "at_least_once",
        on_unknown: Literal["tell_model", "wait"] = "tell_model",
    ) -> Callable[[F], F]: ...
    def tool(self, fn: Any = None, /, **options: Any) -> Any:
        """Register a tool whose first parameter is ``RunContext[Deps]``."""
        return self._decorate(fn, True, options)

    @overload
    def tool_plain(self, fn: F, /) -> F: ...
    @overload
    def tool_plain(
        self,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        requires_approval: bool = False,
        side_effects: SideEffects = "at_least_once",
        on_unknown: Literal["tell_model", "wait"] = "tell_model",
    ) -> Callable[[F], F]: ...
    def tool_plain(self, fn: Any = None, /, **options: Any) -> Any:
        """Register a tool that does not take a ``RunContext``."""
        return self._decorate(fn, False, options)

    def _decorate(self, fn: Any, takes_ctx: bool, options: dict[str, Any]) -> Any:
        def register(f: Any) -> Any:
            self._add_tool(Tool(f, takes_ctx=takes_ctx, **options))
            return f

        return register if fn is None else register(fn)

    def output_validator(self, fn: F, /) -> F:
        """Register ``fn(output)`` or ``fn(ctx, output)`` (sync or async); it may raise ``ModelRetry``."""
        self._output_validators.append(fn)
        return fn

    def instructions(self, fn: F, /) -> F:
        """Register a function of ``RunContext`` (sync or async) whose result is added to the instructions."""
        self._instructions.append(fn)
        return fn

    # --- identity ---------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of what decides a run's path: name, static instructions, tools, output schema, model."""
        data = {
            "name": self.name,
            "instructions": [i if isinstance(i, str) else getattr(i, "__qualname__", "fn") for i in self._instructions],
            "tools": sorted(
                (
                    t.name,
                    json.dumps(t.parameters_json_schema, sort_keys=True),
                    t.requires_approval,
                    t.side_effects,
                )
                for t in self._tools.values()
            ),
            "output": [json.dumps(d.parameters_json_schema, sort_keys=True) for d in self._output.tool_definitions],
            "model": self.model_name,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def resolve_model(self, model: Model | str | None = None) -> Model:
        chosen = model if model is not None else self.model
        if chosen is None:
            raise UserError("no model: pass one to Agent(model=...) or to run(..., model=...)")
        return infer_model(chosen)

    def spec(self) -> AgentSpec:
        """A frozen snapshot of what a run needs from this agent (what the loop and the step functions read)."""
        return AgentSpec(
            name=self.name,
            instructions=tuple(self._instructions),
            system_prompts=tuple(self._system_prompts),
            tools=dict(self._tools),
            output=self._output,
            output_validators=tuple(self._output_validators),
            retries=self.retries,
            output_retries=self.output_retries,
            model_settings=self.model_settings,
            retry_config=self.retry_config,
            source=self,
        )

    def new_loop(self, run: RunInput, deps: Any, model: Model) -> AgentLoop[OutputT]:
        return AgentLoop(self.spec(), run, deps, model.model_name)

    # --- plain runs -------------------------------------------------------------------------------------

    async def run(
        self,
        prompt: Prompt | None = None,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: Model | str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run the agent to its output. Not durable: a crash loses the run (use ``DurableAgent`` for that)."""
        resolved = self.resolve_model(model)
        prompt, content = split_prompt(prompt)
        run = RunInput(
            prompt=prompt,
            content=content,
            run_id=new_run_id(),
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
        )
        engine = InlineEngine(self, resolved, deps=deps, run_id=run.run_id, prompt=prompt)
        from .observability._spans import run_attempt  # OpenTelemetry loads with the first run, not on import

        with run_attempt(self, run_id=run.run_id, engine="inline", model=resolved.model_name, prompt=prompt) as obs:
            try:
                result = await drive(self.new_loop(run, deps, resolved), engine.execute)
            except (ToolError, ApprovalRequired) as e:
                final = engine.finish(e)
                if final is e:
                    raise
                raise final from None
            obs.set_result(result)
        return result

    def run_sync(
        self,
        prompt: Prompt | None = None,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: Model | str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AgentRunResult[OutputT]:
        """``run`` for code without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UserError("run_sync() cannot be called from a running event loop; use `await agent.run(...)`")
        return asyncio.run(
            self.run(
                prompt,
                deps=deps,
                message_history=message_history,
                model=model,
                usage_limits=usage_limits,
                model_settings=model_settings,
            )
        )

    @asynccontextmanager
    async def run_stream(
        self,
        prompt: Prompt | None = None,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        message_history: Sequence[ModelMessage] | None = None,
        model: Model | str | None = None,
        usage_limits: UsageLimits | None = None,
        model_settings: ModelSettings | None = None,
    ) -> AsyncIterator[StreamedRunResult[OutputT]]:
        """Run the agent, streaming text, partial output and tool-call events as they arrive::

        async with agent.run_stream("Tell me a story") as stream:
            async for delta in stream.stream_text(delta=True):
                print(delta, end="")
        """
        resolved = self.resolve_model(model)
        prompt, content = split_prompt(prompt)
        run = RunInput(
            prompt=prompt,
            content=content,
            run_id=new_run_id(),
            message_history=list(message_history or []),
            usage_limits=usage_limits,
            model_settings=model_settings,
        )
        async with run_streamed(self, self.new_loop(run, deps, resolved), resolved, deps) as stream:
            yield stream
