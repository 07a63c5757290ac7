"""Structured output: every kind of output type, unions, native mode, output validators."""

from dataclasses import dataclass
from typing import Any, NotRequired

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from perdure import Agent, ModelRetry, RunContext, UnexpectedModelBehavior, UserError
from perdure.messages import (
    ModelMessage,
    ModelRequest,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from perdure.models.function import AgentInfo, FunctionModel
from perdure.models.test import TestModel

from ._scripts import Script, call, calls, text


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


@dataclass
class Point:
    x: int
    y: int


class Person(TypedDict):
    """Someone's name and, if known, their age."""

    name: str
    age: NotRequired[int]


class Error(BaseModel):
    message: str


def test_str_output_is_plain_text() -> None:
    script = Script(text("Paris"))
    result = Agent(script.model).run_sync("capital of France?")
    assert result.output == "Paris"
    assert script.infos[0].output_tools == []
    assert script.infos[0].allow_text_output


def test_pydantic_model_output() -> None:
    script = Script(call("final_result", {"name": "Paris", "country": "France"}, "out"))
    agent = Agent(script.model, output_type=City)
    result = agent.run_sync("capital of France?")
    assert result.output == City(name="Paris", country="France")
    [tool] = script.infos[0].output_tools
    assert tool.name == "final_result"
    assert tool.kind == "output"
    assert tool.description == "A city and its country."
    assert tool.parameters_json_schema == {
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "country": {"title": "Country", "type": "string"},
        },
        "required": ["name", "country"],
        "type": "object",
    }
    assert not script.infos[0].allow_text_output
    # The output call is answered, so the history is complete for a next run.
    assert result.all_messages()[-1] == ModelRequest(
        parts=[ToolReturnPart(tool_name="final_result", content="Final result processed.", tool_call_id="out")]
    )


def test_model_without_docstring_gets_the_default_description() -> None:
    class Bare(BaseModel):
        value: int

    script = Script(call("final_result", {"value": 1}))
    Agent(script.model, output_type=Bare).run_sync("x")
    assert script.infos[0].output_tools[0].description == "The final response which ends this conversation."


def test_dataclass_output() -> None:
    script = Script(call("final_result", '{"x": 1, "y": 2}'))
    result = Agent(script.model, output_type=Point).run_sync("a point")
    assert result.output == Point(1, 2)
    [tool] = script.infos[0].output_tools
    assert tool.description == "The final response which ends this conversation."
    assert tool.parameters_json_schema["required"] == ["x", "y"]


def test_typed_dict_output() -> None:
    script = Script(call("final_result", {"name": "Ada"}))
    result = Agent(script.model, output_type=Person).run_sync("who?")
    assert result.output == {"name": "Ada"}
    [tool] = script.infos[0].output_tools
    assert tool.description == "Someone's name and, if known, their age."
    assert tool.parameters_json_schema["properties"] == {
        "name": {"title": "Name", "type": "string"},
        "age": {"title": "Age", "type": "integer"},
    }
    assert tool.parameters_json_schema["required"] == ["name"]


@pytest.mark.parametrize(
    ("output_type", "value"),
    [(int, 42), (float, 2.5), (bool, True), (list[int], [1, 2]), (dict[str, int], {"a": 1})],
)
def test_scalar_and_container_outputs_are_wrapped_in_a_response_field(output_type: Any, value: Any) -> None:
    script = Script(call("final_result", {"response": value}))
    result = Agent(script.model, output_type=output_type).run_sync("x")
    assert result.output == value
    [tool] = script.infos[0].output_tools
    assert tool.parameters_json_schema["required"] == ["response"]


def test_test_model_generates_each_kind_of_output() -> None:
    assert Agent(TestModel(), output_type=City).run_sync("x").output == City(name="a", country="a")
    assert Agent(TestModel(), output_type=Point).run_sync("x").output == Point(0, 0)
    assert Agent(TestModel(), output_type=Person).run_sync("x").output == {"name": "a"}
    assert Agent(TestModel(seed=7), output_type=int).run_sync("x").output == 7
    assert Agent(TestModel(custom_output_args=[3, 4]), output_type=list[int]).run_sync("x").output == [3, 4]
    assert Agent(TestModel(custom_output_text="hey")).run_sync("x").output == "hey"


def test_list_of_types_is_a_union_with_one_output_tool_each() -> None:
    script = Script(call("final_result_Error", {"message": "no such city"}))
    agent = Agent(script.model, output_type=[City, Error])
    assert agent.run_sync("capital of Atlantis?").output == Error(message="no such city")
    assert [t.name for t in script.infos[0].output_tools] == ["final_result_City", "final_result_Error"]
    assert not script.infos[0].allow_text_output


def test_union_of_models_is_the_same_as_a_list() -> None:
    script = Script(call("final_result_City", {"name": "Oslo", "country": "Norway"}))
    agent: Agent[None, City | Error] = Agent(script.model, output_type=City | Error)
    assert agent.run_sync("x").output == City(name="Oslo", country="Norway")
    assert [t.name for t in script.infos[0].output_tools] == ["final_result_City", "final_result_Error"]


def test_union_with_str_allows_text_or_a_tool() -> None:
    agent = Agent(Script(text("just text")).model, output_type=[City, str])
    assert agent.run_sync("x").output == "just text"
    script = Script(call("final_result", {"name": "Oslo", "country": "Norway"}))
    agent2 = Agent(script.model, output_type=City | str)
    assert agent2.run_sync("x").output == City(name="Oslo", country="Norway")
    assert script.infos[0].allow_text_output
    assert [t.name for t in script.infos[0].output_tools] == ["final_result"]


def test_union_of_scalars_is_one_wrapped_output_tool() -> None:
    script = Script(call("final_result", {"response": 3}))
    assert Agent(script.model, output_type=int | None).run_sync("x").output == 3
    assert [t.name for t in script.infos[0].output_tools] == ["final_result"]


def test_output_types_with_clashing_names_are_a_user_error() -> None:
    class A(BaseModel):
        x: int

    first = A

    class A(BaseModel):  # type: ignore[no-redef]  # the clash is the point of the test
        y: int

    with pytest.raises(UserError, match="clashing names"):
        Agent(TestModel(), output_type=[first, A])


def test_output_type_without_a_schema_is_a_user_error() -> None:
    class Opaque:
        pass

    with pytest.raises(UserError, match="no JSON schema"):
        Agent(TestModel(), output_type=Opaque)


def test_invalid_output_goes_back_to_the_model_then_succeeds() -> None:
    script = Script(
        call("final_result", {"name": "Paris"}, "o1"),
        call("final_result", {"name": "Paris", "country": "France"}, "o2"),
    )
    result = Agent(script.model, output_type=City).run_sync("x")
    assert result.output.country == "France"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert retry.tool_name == "final_result"
    assert retry.tool_call_id == "o1"
    assert isinstance(retry.content, list)
    assert retry.content[0]["loc"] == ["country"]


def test_text_when_structured_output_is_required_is_retried() -> None:
    script = Script(text("Paris, France"), call("final_result", {"name": "Paris", "country": "France"}))
    result = Agent(script.model, output_type=City).run_sync("x")
    assert result.output.name == "Paris"
    assert script.last_request(1).parts == [
        RetryPromptPart(content="Plain text responses are not permitted, please include your response in a tool call.")
    ]


def test_empty_response_is_retried() -> None:
    from perdure.messages import ModelResponse

    script = Script(ModelResponse(parts=[]), text("ok"))
    assert Agent(script.model).run_sync("x").output == "ok"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)
    assert "without text or tool calls" in str(retry.content)


def test_invalid_output_past_the_budget_raises() -> None:
    script = Script(call("final_result", {"name": "P"}), call("final_result", {"name": "P"}))
    with pytest.raises(UnexpectedModelBehavior, match="output retry budget of 1") as info:
        Agent(script.model, output_type=City).run_sync("x")
    assert "country: Field required" in str(info.value)


def test_output_call_ends_the_run_and_other_calls_are_not_executed() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="final_result", args={"response": 1}, tool_call_id="out"),
            ToolCallPart(tool_name="side_effect", args={}, tool_call_id="se"),
        )
    )
    agent = Agent(script.model, output_type=int)
    ran: list[str] = []

    @agent.tool_plain
    def side_effect() -> str:
        ran.append("ran")
        return "done"

    result = agent.run_sync("x")
    assert result.output == 1
    assert ran == []
    assert [p.content for p in result.all_messages()[-1].parts] == [  # type: ignore[union-attr]
        "Final result processed.",
        "Tool not executed - a final result was already processed.",
    ]


def test_tools_then_structured_output() -> None:
    script = Script(
        call("lookup", {"city": "Oslo"}),
        call("final_result", {"name": "Oslo", "country": "Norway"}),
    )
    agent = Agent(script.model, output_type=City)

    @agent.tool_plain
    def lookup(city: str) -> str:
        return "Norway"

    assert agent.run_sync("x").output.country == "Norway"


def test_native_output_mode_asks_for_json_text() -> None:
    seen: list[Any] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> Any:
        seen.append(info)
        return text('{"name": "Rome", "country": "Italy"}')

    agent = Agent(FunctionModel(answer), output_type=City, output_mode="native")
    assert agent.run_sync("x").output == City(name="Rome", country="Italy")
    assert seen[0].output_tools == []
    assert Agent(TestModel(), output_type=City, output_mode="native").run_sync("x").output == City(
        name="a", country="a"
    )


def test_native_output_invalid_json_is_retried() -> None:
    script = Script(text('{"name": "Rome"'), text('{"name": "Rome", "country": "Italy"}'))
    agent = Agent(script.model, output_type=City, output_mode="native")
    assert agent.run_sync("x").output.country == "Italy"
    [retry] = script.last_request(1).parts
    assert isinstance(retry, RetryPromptPart)


def test_native_output_needs_exactly_one_structured_type() -> None:
    with pytest.raises(UserError, match="native"):
        Agent(TestModel(), output_type=[City, Error], output_mode="native")
    with pytest.raises(UserError, match="native"):
        Agent(TestModel(), output_type=str, output_mode="native")


# --- output validators -----------------------------------------------------------------------------------


def test_output_validator_raising_model_retry_sends_the_message_back() -> None:
    script = Script(
        call("final_result", {"name": "paris", "country": "France"}, "o1"),
        call("final_result", {"name": "Paris", "country": "France"}, "o2"),
    )
    agent = Agent(script.model, output_type=City)
    retries: list[int] = []

    @agent.output_validator
    def capitalised(ctx: RunContext[None], city: City) -> City:
        retries.append(ctx.retry)
        if not city.name[0].isupper():
            raise ModelRetry("Capitalise the city name.")
        return city

    assert agent.run_sync("x").output.name == "Paris"
    assert retries == [0, 1]
    assert script.last_request(1).parts == [
        RetryPromptPart(content="Capitalise the city name.", tool_name="final_result", tool_call_id="o1")
    ]


def test_async_output_validator_on_text_can_transform_the_output() -> None:
    script = Script(text("draft"), text("final"))
    agent = Agent(script.model)

    @agent.output_validator
    async def no_drafts(output: str) -> str:
        if output == "draft":
            raise ModelRetry("Not a draft, please.")
        return output.upper()

    assert agent.run_sync("x").output == "FINAL"
    assert script.last_request(1).parts == [RetryPromptPart(content="Not a draft, please.")]


def test_output_validator_retrying_forever_exhausts_the_budget() -> None:
    script = Script(text("a"), text("b"), text("c"))
    agent = Agent(script.model, output_retries=2)

    @agent.output_validator
    def never(output: str) -> str:
        raise ModelRetry(f"no {output}")

    with pytest.raises(UnexpectedModelBehavior, match="output retry budget of 2; last error: no c"):
        agent.run_sync("x")


def test_text_part_alongside_output_call_is_ignored() -> None:
    from perdure.messages import ModelResponse

    script = Script(
        ModelResponse(
            parts=[
                TextPart(content="thinking..."),
                ToolCallPart(tool_name="final_result", args={"response": 2}),
            ]
        )
    )
    assert Agent(script.model, output_type=int).run_sync("x").output == 2


def test_each_call_is_answered_once_when_an_invalid_output_call_precedes_a_valid_one() -> None:
    script = Script(
        calls(
            ToolCallPart(tool_name="final_result", args={"response": "x"}, tool_call_id="bad"),
            ToolCallPart(tool_name="final_result", args={"response": 5}, tool_call_id="good"),
        )
    )
    result = Agent(script.model, output_type=int, output_retries=1).run_sync("x")
    assert result.output == 5
    answers = result.all_messages()[-1].parts
    assert [(type(p).__name__, p.tool_call_id) for p in answers] == [  # type: ignore[union-attr]
        ("RetryPromptPart", "bad"),
        ("ToolReturnPart", "good"),
    ]
