"""Function tools: schemas from signatures and docstrings, validation, retries, errors, parallel calls."""

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from perdure import (
    Agent,
    ApprovalRequired,
    ModelRetry,
    RunContext,
    Tool,
    ToolError,
    UnexpectedModelBehavior,
    UserError,
)
from perdure.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    RetryPromptPart,
    ToolCallPart,
    ToolReturnPart,
)
from perdure.models.function import AgentInfo
from perdure.models.test import TestModel

from ._scripts import Script, call, calls, text

# --- schemas ---------------------------------------------------------------------------------------------


def test_schema_from_type_hints_and_google_docstring() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def find_flights(origin: str, destination: str, max_stops: int = 1, *, direct: bool | None = None) -> str:
        """Find flights between two airports.

        Args:
            origin: IATA code of the departure airport.
            destination (str): IATA code of the arrival airport,
                for example LHR.
            max_stops: How many stops are acceptable.
            direct: Only direct flights.

        Returns:
            A summary of the flights found.
        """
        return "none"

    definition = agent.tools["find_flights"].definition
    assert definition.name == "find_flights"
    assert definition.description == "Find flights between two airports."
    assert definition.parameters_json_schema == {
        "additionalProperties": False,
        "properties": {
            "origin": {"description": "IATA code of the departure airport.", "type": "string"},
            "destination": {
                "description": "IATA code of the arrival airport, for example LHR.",
                "type": "string",
            },
            "max_stops": {"default": 1, "description": "How many stops are acceptable.", "type": "integer"},
            "direct": {
                "anyOf": [{"type": "boolean"}, {"type": "null"}],
                "default": None,
                "description": "Only direct flights.",
            },
        },
        "required": ["origin", "destination"],
        "type": "object",
    }


def test_schema_descriptions_from_numpy_docstring() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def convert(amount: float, currency: str) -> float:
        """Convert an amount to euros.

        Uses today's rate.

        Parameters
        ----------
        amount : float
            How much to convert.
        currency : str
            ISO 4217 code of the
            source currency.

        Returns
        -------
        float
            The amount in euros.
        """
        return amount

    definition = agent.tools["convert"].definition
    assert definition.description == "Convert an amount to euros.\n\nUses today's rate."
    props = definition.parameters_json_schema["properties"]
    assert props["amount"] == {"description": "How much to convert.", "type": "number"}
    assert props["currency"] == {"description": "ISO 4217 code of the source currency.", "type": "string"}


def test_schema_descriptions_from_sphinx_docstring() -> None:
    agent = Agent(TestModel())

    @agent.tool
    def greet(ctx: RunContext[None], name: str, loud: bool = False) -> str:
        """Greet someone.

        :param name: Who to greet.
        :param bool loud: Shout the greeting,
            in capitals.
        :returns: The greeting.
        """
        return name

    definition = agent.tools["greet"].definition
    assert definition.description == "Greet someone."
    props = definition.parameters_json_schema["properties"]
    assert props["name"] == {"description": "Who to greet.", "type": "string"}
    assert props["loud"] == {
        "default": False,
        "description": "Shout the greeting, in capitals.",
        "type": "boolean",
    }
    assert definition.parameters_json_schema["required"] == ["name"]


class Address(BaseModel):
    street: str
    city: str


def test_schema_of_nested_model_parameter_and_what_the_model_is_told() -> None:
    script = Script(text("ok"))
    agent = Agent(script.model)

    @agent.tool_plain
    def ship(to: Address, items: list[str]) -> str:
        """Ship items."""
        return "shipped"

    agent.run_sync("go")
    [tool] = script.infos[0].function_tools
    assert tool.name == "ship"
    assert tool.kind == "function"
    assert tool.parameters_json_schema["properties"]["items"] == {
        "items": {"type": "string"},
        "type": "array",
    }
    assert tool.parameters_json_schema["properties"]["to"] == {"$ref": "#/$defs/Address"}
    assert set(tool.parameters_json_schema["$defs"]["Address"]["properties"]) == {"street", "city"}


def test_tool_without_parameters_has_an_empty_object_schema() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def now() -> str:
        return "noon"

    assert agent.tools["now"].definition.parameters_json_schema == {
        "additionalProperties": False,
        "properties": {},
        "type": "object",
    }
    assert agent.tools["now"].definition.description == ""


def test_tool_options_and_explicit_tool_objects() -> None:
    def lookup(ctx: RunContext[None], key: str) -> str:
        return key

    agent = Agent(TestModel(), tools=[Tool(lookup, name="get", description="Get a key.", retries=3)])
    tool = agent.tools["get"]
    assert tool.takes_ctx
    assert tool.retries == 3
    assert tool.definition.description == "Get a key."


def test_tool_registration_mistakes_are_user_errors() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def dup() -> str:
        return ""

    with pytest.raises(UserError, match="already has a tool named 'dup'"):
        agent.tool_plain(dup)
    with pytest.raises(UserError, match="RunContext"):

        @agent.tool_plain
        def needs_ctx(ctx: RunContext[None], x: int) -> int:
            return x

    with pytest.raises(UserError, match=r"\*args"):

        @agent.tool_plain
        def star(*args: int) -> int:
            return 0

    with pytest.raises(UserError, match="side_effects"):
        agent.tool_plain(side_effects="sometimes")(dup)  # type: ignore[call-overload]  # misuse on purpose


def test_tool_taking_context_must_declare_it_first() -> None:
    agent = Agent(TestModel())
    with pytest.raises(UserError, match="first parameter"):

        @agent.tool
        def add(a: int, b: int) -> int:
            return a + b


def test_tool_name_must_not_clash_with_output_tool() -> None:
    def final_result(x: int) -> int:
        return x

    with pytest.raises(UserError, match="clashes with an output tool"):
        Agent(TestModel(), output_type=int, tools=[final_result])


# --- calls and results -----------------------------------------------------------------------------------


@dataclass
class Shop:
    name: str


def test_tools_get_context_and_their_results_reach_the_model() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="shop_name", args={}, tool_call_id="c1"),
            ToolCallPart(tool_name="add", args='{"a": 2, "b": 3}', tool_call_id="c2"),
        ),
        text("done"),
    )
    agent: Agent[Shop, str] = Agent(script.model, deps_type=Shop)
    contexts: list[RunContext[Shop]] = []

    @agent.tool
    async def shop_name(ctx: RunContext[Shop]) -> str:
        contexts.append(ctx)
        return ctx.deps.name

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    result = agent.run_sync("hi", deps=Shop("corner"))
    assert result.output == "done"
    returns = script.last_request(1).parts
    assert returns == [
        ToolReturnPart(tool_name="shop_name", content="corner", tool_call_id="c1"),
        ToolReturnPart(tool_name="add", content=5, tool_call_id="c2"),
    ]
    [ctx] = contexts
    assert ctx.tool_name == "shop_name"
    assert ctx.tool_call_id == "c1"
    assert ctx.run_id == result.run_id
    assert ctx.prompt == "hi"
    assert ctx.retry == 0
    # Stable across retries and resumes of this call: the run id and the call's step key.
    assert ctx.idempotency_key == f"{result.run_id}/turn/1/tool/c1"
    assert ctx.step_key == "turn/1/tool/c1"
    assert result.usage().tool_calls == 2
    assert result.usage().requests == 2


class Forecast(BaseModel):
    city: str
    celsius: float


def test_tool_returning_a_model_round_trips_as_that_model() -> None:
    script = Script(call("forecast", {"city": "Oslo"}, "f1"), text("cold"))
    agent = Agent(script.model)

    @agent.tool_plain
    def forecast(city: str) -> Forecast:
        return Forecast(city=city, celsius=-3.5)

    result = agent.run_sync("weather?")
    [part] = script.last_request(1).parts
    assert isinstance(part, ToolReturnPart)
    assert part.content == Forecast(city="Oslo", celsius=-3.5)
    assert part.model_response_str() == '{"city": "Oslo", "celsius": -3.5}'
    # Stored as JSON, it comes back as JSON data.
    restored = ModelMessagesTypeAdapter.validate_json(ModelMessagesTypeAdapter.dump_json(result.all_messages()))
    tool_return = restored[2]
    assert isinstance(tool_return, ModelRequest)
    assert tool_return.parts[0].content == {"city": "Oslo", "celsius": -3.5}  # type: ignore[union-attr]


def test_tool_returning_a_non_serializable_object_fails_naming_tool_and_type() -> None:
    class Handle:
        pass

    agent = Agent(Script(call("open_file", {}), text("never")).model)

    @agent.tool_plain
    def open_file() -> Any:
        return Handle()

    with pytest.raises(ToolError) as info:
        agent.run_sync("open it")
    assert info.value.tool_name == "open_file"
    assert "'open_file'" in str(info.value)
    assert "Handle" in str(info.value)
    assert isinstance(info.value.__cause__, UserError)


def test_tool_raising_fails_the_run_with_a_tool_error() -> None:
    agent = Agent(Script(call("charge", {"cents": 5}), text("never")).model)

    @agent.tool_plain
    def charge(cents: int) -> str:
        raise ConnectionError("bank is down")

    with pytest.raises(ToolError) as info:
        agent.run_sync("pay")
    assert info.value.tool_name == "charge"
    assert info.value.error_type == "ConnectionError"
    assert "bank is down" in str(info.value)
    # A plain run keeps the tool's own exception, with its traceback into the tool's code.
    assert isinstance(info.value.__cause__, ConnectionError)
    assert info.value.__cause__.__traceback__ is not None


def test_requires_approval_on_a_plain_run_raises_approval_required() -> None:
    agent = Agent(Script(call("refund", {"order": 42}, "r1"), text("never")).model)
    ran = []

    @agent.tool_plain(requires_approval=True)
    def refund(order: int) -> str:
        ran.append(order)
        return "refunded"

    with pytest.raises(ApprovalRequired) as info:
        agent.run_sync("refund 42")
    assert info.value.pending == [{"tool_name": "refund", "tool_call_id": "r1", "args": {"order": 42}}]
    assert "DurableAgent" in str(info.value)
    assert ran == []


def test_approval_required_lists_every_parallel_call_that_needs_one() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="refund", args={"order": 1}, tool_call_id="r1"),
            ToolCallPart(tool_name="refund", args={"order": 2}, tool_call_id="r2"),
            ToolCallPart(tool_name="lookup", args={"order": 3}, tool_call_id="l3"),
        )
    )
    agent = Agent(script.model)
    ran: list[str] = []

    @agent.tool_plain(requires_approval=True)
    def refund(order: int) -> str:
        ran.append("refund")
        return "refunded"

    @agent.tool_plain
    def lookup(order: int) -> str:
        ran.append("lookup")
        return "found"

    with pytest.raises(ApprovalRequired) as info:
        agent.run_sync("refund 1 and 2")
    assert [p["tool_call_id"] for p in info.value.pending] == ["r1", "r2"]
    assert ran == []


# --- retries ---------------------------------------------------------------------------------------------


def test_invalid_arguments_go_back_to_the_model_listing_errors() -> None:
    script = Script(
        call("add", {"a": "three", "c": 1}, "bad"),
        call("add", {"a": 3, "b": 4}, "good"),
        text("7"),
    )
    agent = Agent(script.model)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    assert agent.run_sync("3+4").output == "7"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert retry.tool_name == "add"
    assert retry.tool_call_id == "bad"
    assert isinstance(retry.content, list)
    assert {(tuple(e["loc"]), e["type"]) for e in retry.content} == {
        (("a",), "int_parsing"),
        (("b",), "missing"),
        (("c",), "extra_forbidden"),
    }
    prompt = retry.model_response()
    assert prompt.startswith("3 validation errors:")
    assert "- b: Field required" in prompt
    assert prompt.endswith("Fix the errors and try again.")
    assert script.last_request(2).parts == [ToolReturnPart(tool_name="add", content=7, tool_call_id="good")]


def test_invalid_json_arguments_go_back_to_the_model() -> None:
    script = Script(call("add", '{"a": 1, "b":', "c1"), call("add", '{"a": 1, "b": 2}', "c2"), text("3"))
    agent = Agent(script.model)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    assert agent.run_sync("1+2").output == "3"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert isinstance(retry.content, str)
    assert retry.content.startswith("Invalid JSON arguments")
    assert retry.tool_call_id == "c1"


def test_arguments_that_are_not_an_object_go_back_to_the_model() -> None:
    script = Script(call("add", "[1, 2]", "c1"), text("?"))
    agent = Agent(script.model)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    agent.run_sync("1+2")
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert "JSON object" in str(retry.content)


def test_model_retry_from_a_tool_is_sent_back_and_ctx_retry_counts() -> None:
    script = Script(call("lookup", {"user": "bob"}, "l1"), call("lookup", {"user": "Bob"}, "l2"), text("found"))
    agent = Agent(script.model, retries=2)
    seen_retries: list[int] = []

    @agent.tool
    def lookup(ctx: RunContext[None], user: str) -> str:
        seen_retries.append(ctx.retry)
        if user != "Bob":
            raise ModelRetry("No user 'bob'; names are capitalised.")
        return "Bob Smith"

    assert agent.run_sync("find bob").output == "found"
    assert seen_retries == [0, 1]
    assert script.last_request(1).parts == [
        RetryPromptPart(content="No user 'bob'; names are capitalised.", tool_name="lookup", tool_call_id="l1")
    ]


def test_exceeding_tool_retries_raises_with_the_last_error() -> None:
    script = Script(*(call("lookup", {"user": f"u{i}"}, f"l{i}") for i in range(5)))
    agent = Agent(script.model)

    @agent.tool_plain(retries=2)
    def lookup(user: str) -> str:
        raise ModelRetry(f"no user {user}")

    with pytest.raises(UnexpectedModelBehavior) as info:
        agent.run_sync("find")
    assert "'lookup'" in str(info.value)
    assert "retry budget of 2" in str(info.value)
    assert "no user u2" in str(info.value)
    assert info.value.body == "no user u2"
    assert len(script.seen) == 3


def test_exceeding_retries_with_invalid_arguments_carries_the_validation_errors() -> None:
    agent = Agent(Script(call("add", {"a": "x", "b": 1}), call("add", {"a": "y", "b": 1})).model, retries=1)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(UnexpectedModelBehavior) as info:
        agent.run_sync("add")
    assert "a: Input should be a valid integer" in str(info.value)
    assert info.value.body is not None
    [error] = json.loads(info.value.body)
    assert (error["loc"], error["type"], error["input"]) == (["a"], "int_parsing", "y")


def test_unknown_tool_name_is_a_retry_prompt_listing_tools() -> None:
    script = Script(call("multiply", {"a": 1}, "m1"), text("sorry"))
    agent = Agent(script.model)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    @agent.tool_plain
    def sub(a: int, b: int) -> int:
        return a - b

    assert agent.run_sync("2*3").output == "sorry"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert retry.content == "Unknown tool name: 'multiply'. Available tools: add, sub"
    assert retry.tool_call_id == "m1"


def test_unknown_tool_name_forever_exhausts_retries() -> None:
    agent = Agent(Script(call("nope"), call("nope"), call("nope")).model, retries=1)
    with pytest.raises(UnexpectedModelBehavior, match="'nope'"):
        agent.run_sync("x")


def test_successful_call_resets_the_retry_budget() -> None:
    script = Script(
        call("flaky", {"n": 1}),
        call("flaky", {"n": 2}),
        call("flaky", {"n": 3}),
        call("flaky", {"n": 4}),
        text("done"),
    )
    agent = Agent(script.model, retries=1)

    @agent.tool_plain
    def flaky(n: int) -> int:
        if n % 2:
            raise ModelRetry("odd")
        return n

    assert agent.run_sync("go").output == "done"


# --- parallel calls --------------------------------------------------------------------------------------


def test_parallel_async_tools_run_concurrently() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="ping", tool_call_id="p"),
            ToolCallPart(tool_name="pong", tool_call_id="q"),
        ),
        text("both"),
    )
    agent = Agent(script.model)
    events: dict[str, asyncio.Event] = {}

    @agent.tool_plain
    async def ping() -> str:
        events["ping"].set()
        await asyncio.wait_for(events["pong"].wait(), timeout=5)  # deadlocks unless pong runs meanwhile
        return "ping"

    @agent.tool_plain
    async def pong() -> str:
        events["pong"].set()
        await asyncio.wait_for(events["ping"].wait(), timeout=5)
        return "pong"

    async def main() -> str:
        events.update(ping=asyncio.Event(), pong=asyncio.Event())
        return (await agent.run("go")).output

    assert asyncio.run(main()) == "both"
    # Results go back in the order of the calls, whatever order they finished in.
    assert [p.tool_call_id for p in script.last_request(1).parts] == ["p", "q"]  # type: ignore[union-attr]


def test_parallel_sync_tools_run_in_worker_threads() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="left", tool_call_id="l"),
            ToolCallPart(tool_name="right", tool_call_id="r"),
        ),
        text("both"),
    )
    agent = Agent(script.model)
    barrier = threading.Barrier(2, timeout=5)  # both calls must be running at once to pass it
    threads: set[int] = set()

    @agent.tool_plain
    def left() -> str:
        threads.add(threading.get_ident())
        barrier.wait()
        return "l"

    @agent.tool_plain
    def right() -> str:
        threads.add(threading.get_ident())
        barrier.wait()
        return "r"

    assert agent.run_sync("go").output == "both"
    assert len(threads) == 2
    assert threading.get_ident() not in threads


def test_a_failing_parallel_call_fails_the_run_after_the_others_finish() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="slow", tool_call_id="s"),
            ToolCallPart(tool_name="broken", tool_call_id="b"),
        ),
    )
    agent = Agent(script.model)
    finished: list[str] = []

    @agent.tool_plain
    async def slow() -> str:
        await asyncio.sleep(0.05)
        finished.append("slow")
        return "ok"

    @agent.tool_plain
    async def broken() -> str:
        raise RuntimeError("nope")

    with pytest.raises(ToolError, match="nope"):
        agent.run_sync("go")
    assert finished == ["slow"]


def test_tool_calls_without_ids_get_unique_ids() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="echo", args={"x": 1}),
            ToolCallPart(tool_name="echo", args={"x": 2}),
        ),
        text("done"),
    )
    agent = Agent(script.model)

    @agent.tool_plain
    def echo(x: int) -> int:
        return x

    agent.run_sync("go")
    parts = script.last_request(1).parts
    ids = [p.tool_call_id for p in parts]  # type: ignore[union-attr]
    assert len(set(ids)) == 2 and all(ids)
    assert [p.content for p in parts] == [1, 2]  # type: ignore[union-attr]


def test_test_model_calls_every_tool_with_schema_generated_arguments() -> None:
    agent = Agent("test")
    got: list[tuple[str, int, bool]] = []

    @agent.tool_plain
    def record(name: str, count: int, flag: bool = True) -> str:
        got.append((name, count, flag))
        return "recorded"

    result = agent.run_sync("go")
    assert got == [("a", 0, True)]
    assert result.output == '{"record": "recorded"}'


def test_function_model_is_told_the_tools_and_settings() -> None:
    seen: list[AgentInfo] = []

    def answer(messages: Any, info: AgentInfo) -> Any:
        seen.append(info)
        return text("ok")

    from perdure.models.function import FunctionModel

    agent = Agent(FunctionModel(answer), model_settings={"temperature": 0.1})

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    agent.run_sync("x", model_settings={"max_tokens": 10})
    [info] = seen
    assert [t.name for t in info.function_tools] == ["add"]
    assert info.output_tools == []
    assert info.allow_text_output
    assert info.model_settings == {"temperature": 0.1, "max_tokens": 10}


class Opaque:
    """Not JSON-able: no schema, no serializer."""


def test_parameters_without_a_json_schema_are_a_user_error_naming_the_tool() -> None:
    agent = Agent(TestModel())
    with pytest.raises(UserError, match="tool 'use_handle': its parameters have no JSON schema"):

        @agent.tool_plain
        def use_handle(handle: Opaque) -> str:
            return ""


def test_unserializable_return_annotation_is_a_user_error_naming_the_tool_and_type() -> None:
    agent = Agent(TestModel())
    with pytest.raises(UserError, match=r"tool 'make_handle': its return type .*Opaque"):

        @agent.tool_plain
        def make_handle() -> Opaque:
            return Opaque()


def test_annotated_field_constraints_and_descriptions_are_kept() -> None:
    script = Script(
        call("pick", {"count": -1, "label": "ok"}, "bad"),
        call("pick", {"count": 2, "label": "ok"}),
        text("done"),
    )
    agent = Agent(script.model)

    @agent.tool_plain
    def pick(
        count: Annotated[int, Field(ge=0, description="How many to pick.")],
        label: Annotated[str, Field(max_length=5)],
    ) -> int:
        """Pick things.

        Args:
            count: Overridden by the Field description.
            label: A short label.
        """
        return count

    assert agent.run_sync("x").output == "done"
    props = script.infos[0].function_tools[0].parameters_json_schema["properties"]
    assert props["count"] == {"description": "How many to pick.", "minimum": 0, "type": "integer"}
    assert props["label"] == {"description": "A short label.", "maxLength": 5, "type": "string"}
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert isinstance(retry.content, list)
    assert retry.content[0]["type"] == "greater_than_equal"


def test_numpy_docstring_with_several_names_on_one_line() -> None:
    agent = Agent(TestModel())

    @agent.tool_plain
    def move(x: int, y: int, speed: float = 1.0) -> str:
        """Move the cursor.

        Parameters
        ----------
        x, y : int
            Target coordinates.
        speed : float, optional
            Pixels per tick.
        """
        return "moved"

    props = agent.tools["move"].definition.parameters_json_schema["properties"]
    assert props["x"]["description"] == props["y"]["description"] == "Target coordinates."
    assert props["speed"]["description"] == "Pixels per tick."


class AsyncCallable:
    """A callable object whose __call__ is async: not a coroutine function, but its result is awaitable."""

    async def __call__(self, word: str) -> str:
        await asyncio.sleep(0)
        return word.upper()


def test_callable_objects_as_tools() -> None:
    with pytest.raises(UserError, match="name="):
        Tool(AsyncCallable())
    script = Script(call("shout", {"word": "hi"}), text("done"))
    agent = Agent(script.model, tools=[Tool(AsyncCallable(), name="shout")])
    agent.run_sync("x")
    assert script.last_request(1).parts[0].content == "HI"  # type: ignore[union-attr]
