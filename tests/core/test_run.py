"""Runs: instructions, usage and its limits, message history, model strings."""

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from perdure import Agent, AgentRunResult, RunContext, Usage, UsageLimitExceeded, UsageLimits, UserError
from perdure.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from perdure.models.test import TestModel
from perdure.usage import RequestUsage

from ._scripts import Script, call, calls, text


@dataclass
class User:
    name: str


# --- instructions ----------------------------------------------------------------------------------------


def test_instructions_from_a_string_a_sync_function_and_an_async_function() -> None:
    script = Script(text("hi"))

    def greet_by_name(ctx: RunContext[User]) -> str:
        return f"The user is called {ctx.deps.name}."

    agent: Agent[User, str] = Agent(script.model, deps_type=User, instructions=["Be brief.", greet_by_name])

    @agent.instructions
    async def today() -> str:
        await asyncio.sleep(0)
        return "Today is Monday."

    @agent.instructions
    def nothing(ctx: RunContext[User]) -> None:
        return None  # contributes nothing

    agent.run_sync("hello", deps=User("Ada"))
    expected = "Be brief.\n\nThe user is called Ada.\n\nToday is Monday."
    assert script.infos[0].instructions == expected
    assert script.last_request(0).instructions == expected


def test_instructions_are_recomputed_for_every_request() -> None:
    script = Script(call("bump"), text("done"))
    counter = {"n": 0}

    def count() -> str:
        return f"Counter: {counter['n']}"

    agent = Agent(script.model, instructions=count)

    @agent.tool_plain
    def bump() -> int:
        counter["n"] += 1
        return counter["n"]

    agent.run_sync("go")
    assert [i.instructions for i in script.infos] == ["Counter: 0", "Counter: 1"]


def test_instruction_function_sees_usage_so_far() -> None:
    script = Script(call("noop"), text("done"))
    seen: list[int] = []

    def note(ctx: RunContext[None]) -> str:
        seen.append(ctx.usage.requests)
        return ""

    agent = Agent(script.model, instructions=note)

    @agent.tool_plain
    def noop() -> None:
        return None

    agent.run_sync("go")
    assert seen == [0, 1]


def test_system_prompts_keep_their_order_and_come_before_the_prompt() -> None:
    script = Script(text("ok"))
    Agent(script.model, system_prompt=["You are a pirate.", "Say arr."]).run_sync("hello")
    assert script.last_request(0).parts == [
        SystemPromptPart(content="You are a pirate."),
        SystemPromptPart(content="Say arr."),
        UserPromptPart(content="hello"),
    ]


# --- results and usage -----------------------------------------------------------------------------------


def test_run_result_messages_and_usage() -> None:
    script = Script(
        ModelResponse(
            parts=[ToolCallPart(tool_name="add", args={"a": 1, "b": 2}, tool_call_id="c")],
            usage=RequestUsage(input_tokens=10, output_tokens=3),
        ),
        ModelResponse(parts=[TextPart(content="3")], usage=RequestUsage(input_tokens=20, output_tokens=1)),
    )
    agent = Agent(script.model, name="calc")

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        return a + b

    result = agent.run_sync("1+2")
    assert isinstance(result, AgentRunResult)
    assert result.output == "3"
    assert result.usage() == Usage(requests=2, input_tokens=30, output_tokens=4, tool_calls=1)
    assert result.usage().total_tokens == 34
    kinds = [type(m).__name__ for m in result.all_messages()]
    assert kinds == ["ModelRequest", "ModelResponse", "ModelRequest", "ModelResponse"]
    assert result.new_messages() == result.all_messages()
    assert ModelMessagesTypeAdapter.validate_json(result.all_messages_json()) == result.all_messages()


def test_run_is_async_and_run_sync_is_its_sync_form() -> None:
    agent = Agent(TestModel(custom_output_text="pong"))

    async def main() -> str:
        return (await agent.run("ping")).output

    assert asyncio.run(main()) == "pong"
    assert agent.run_sync("ping").output == "pong"


def test_model_given_to_run_overrides_the_agents() -> None:
    agent = Agent(TestModel(custom_output_text="agent's"))
    assert agent.run_sync("x", model=TestModel(custom_output_text="run's")).output == "run's"
    with pytest.raises(UserError, match="no model"):
        Agent().run_sync("x")


# --- usage limits ----------------------------------------------------------------------------------------


def _looping_agent(script: Script) -> Agent[None, str]:
    agent = Agent(script.model)

    @agent.tool_plain
    def again() -> str:
        return "again"

    return agent


def test_request_limit() -> None:
    script = Script(*(call("again") for _ in range(5)))
    with pytest.raises(UsageLimitExceeded, match="request_limit of 3"):
        _looping_agent(script).run_sync("x", usage_limits=UsageLimits(request_limit=3))
    assert len(script.seen) == 3


def test_default_request_limit_bounds_a_runaway_loop() -> None:
    script = Script(*(call("again") for _ in range(60)))
    with pytest.raises(UsageLimitExceeded, match="request_limit of 50"):
        _looping_agent(script).run_sync("x")
    assert len(script.seen) == 50


def test_tool_calls_limit_stops_before_running_the_calls() -> None:
    script = Script(
        call("again"),
        calls(ToolCallPart(tool_name="again"), ToolCallPart(tool_name="again")),
        text("never"),
    )
    agent = Agent(script.model)
    ran: list[int] = []

    @agent.tool_plain
    def again() -> str:
        ran.append(1)
        return "again"

    with pytest.raises(UsageLimitExceeded, match="tool_calls_limit of 2"):
        agent.run_sync("x", usage_limits=UsageLimits(tool_calls_limit=2))
    assert len(ran) == 1


def _with_usage(response: ModelResponse, input_tokens: int, output_tokens: int) -> ModelResponse:
    return response.model_copy(update={"usage": RequestUsage(input_tokens=input_tokens, output_tokens=output_tokens)})


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (UsageLimits(input_tokens_limit=150), "input_tokens_limit of 150 (input_tokens=200)"),
        (UsageLimits(output_tokens_limit=15), "output_tokens_limit of 15 (output_tokens=20)"),
        (UsageLimits(total_tokens_limit=200), "total_tokens_limit of 200 (total_tokens=220)"),
    ],
)
def test_token_limits(limits: UsageLimits, message: str) -> None:
    script = Script(_with_usage(call("again"), 100, 10), _with_usage(call("again"), 100, 10), text("never"))
    with pytest.raises(UsageLimitExceeded, match=message.replace("(", r"\(").replace(")", r"\)")):
        _looping_agent(script).run_sync("x", usage_limits=limits)
    assert len(script.seen) == 2


def test_limits_that_are_not_hit_let_the_run_finish() -> None:
    limits = UsageLimits(
        request_limit=2,
        tool_calls_limit=1,
        input_tokens_limit=200,
        output_tokens_limit=20,
        total_tokens_limit=220,
    )
    script = Script(_with_usage(call("again"), 100, 10), _with_usage(text("done"), 100, 10))
    assert _looping_agent(script).run_sync("x", usage_limits=limits).output == "done"


def test_usage_limit_exceeded_is_an_agent_run_error() -> None:
    from perdure import AgentRunError

    assert issubclass(UsageLimitExceeded, AgentRunError)


# --- message history -------------------------------------------------------------------------------------


def test_message_history_round_trips_through_json_and_continues_the_conversation() -> None:
    first = Script(call("remember", {"fact": "the cat is called Tom"}, "r1"), text("Noted."))
    agent = Agent(first.model, system_prompt="You remember things.")

    @agent.tool_plain
    def remember(fact: str) -> str:
        return f"remembered: {fact}"

    result = agent.run_sync("Remember the cat's name.")
    stored = ModelMessagesTypeAdapter.dump_json(result.all_messages())
    history = ModelMessagesTypeAdapter.validate_json(stored)
    assert history == result.all_messages()

    second = Script(text("Tom."))
    result2 = agent.run_sync("What is the cat called?", message_history=history, model=second.model)
    assert result2.output == "Tom."
    sent = second.seen[0]
    assert sent[: len(history)] == history
    assert sent[-1] == ModelRequest(parts=[UserPromptPart(content="What is the cat called?")])
    # The system prompt is not repeated when continuing a conversation.
    assert sum(isinstance(p, SystemPromptPart) for m in sent for p in m.parts) == 1
    assert result2.all_messages()[: len(history)] == history
    assert result2.new_messages() == result2.all_messages()[len(history) :]
    assert len(result2.new_messages()) == 2
    assert isinstance(history[2], ModelRequest)
    assert history[2].parts == [
        ToolReturnPart(tool_name="remember", content="remembered: the cat is called Tom", tool_call_id="r1")
    ]


def test_history_ending_with_a_request_is_continued_without_a_prompt() -> None:
    script = Script(text("answer"))
    history = [ModelRequest(parts=[UserPromptPart(content="question")])]
    result = Agent(script.model).run_sync(message_history=history)
    assert result.output == "answer"
    assert script.seen[0] == history
    assert history == [ModelRequest(parts=[UserPromptPart(content="question")])]  # not mutated


# --- model strings ---------------------------------------------------------------------------------------


def test_test_model_string() -> None:
    assert Agent("test").run_sync("x").output == "success (no tool calls)"
    assert Agent("test").model_name == "test"


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown model provider 'mystery'.*openai, .*anthropic, .*google, .*test"):
        Agent("mystery:model-1").run_sync("x")
    with pytest.raises(UserError, match="provider:model-name"):
        Agent("gpt-4.1-mini").run_sync("x")


@pytest.mark.parametrize(
    ("model", "env"),
    [("openai:gpt-4.1-mini", "OPENAI_API_KEY"), ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY")],
)
def test_missing_api_key_names_the_environment_variable(model: str, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(UserError, match=f"set the {env} environment variable"):
        Agent(model).run_sync("x")


def test_model_must_be_a_model_or_a_string() -> None:
    with pytest.raises(UserError, match="model must be a Model"):
        Agent(42)  # type: ignore[call-overload]  # misuse on purpose
    with pytest.raises(UserError, match="retries"):
        Agent("test", retries=-1)


def test_test_model_string_with_a_name() -> None:
    agent = Agent("test:my-model")
    result = agent.run_sync("x")
    assert result.all_messages()[-1].model_name == "my-model"  # type: ignore[union-attr]


def test_run_sync_inside_an_event_loop_says_to_await_run() -> None:
    agent = Agent("test")

    async def main() -> None:
        agent.run_sync("x")

    with pytest.raises(UserError, match=r"await agent\.run"):
        asyncio.run(main())


def test_model_settings_are_validated_by_pydantic() -> None:
    import pydantic

    from perdure.models import ModelSettings

    adapter = pydantic.TypeAdapter(ModelSettings)  # engines journal settings as JSON
    assert adapter.validate_json('{"temperature": 0.5, "max_tokens": 100}') == {
        "temperature": 0.5,
        "max_tokens": 100,
    }


# --- agent definition ------------------------------------------------------------------------------------


def test_tools_given_as_functions_detect_the_context_parameter() -> None:
    def with_ctx(ctx: RunContext[User], greeting: str) -> str:
        return f"{greeting}, {ctx.deps.name}"

    def without_ctx(a: int) -> int:
        return a

    script = Script(
        calls(
            ToolCallPart(tool_name="with_ctx", args={"greeting": "Hi"}, tool_call_id="w"),
            ToolCallPart(tool_name="without_ctx", args={"a": 1}, tool_call_id="p"),
        ),
        text("done"),
    )
    agent = Agent(script.model, deps_type=User, tools=[with_ctx, without_ctx])
    agent.run_sync("x", deps=User("Ada"))
    assert [p.content for p in script.last_request(1).parts] == ["Hi, Ada", 1]  # type: ignore[union-attr]


def test_test_model_calls_only_the_chosen_tools() -> None:
    called: list[str] = []
    agent = Agent(TestModel(call_tools=["b"]))

    @agent.tool_plain
    def a() -> str:
        called.append("a")
        return "a"

    @agent.tool_plain
    def b() -> str:
        called.append("b")
        return "b"

    assert agent.run_sync("x").output == '{"b": "b"}'
    assert called == ["b"]


def _agent_for_fingerprint(
    *, extra_tool: bool = False, output_type: type[Any] = str, model: str = "test"
) -> Agent[None, Any]:
    agent = Agent(model, name="fp", instructions="Be brief.", output_type=output_type)

    @agent.tool_plain
    def lookup(key: str) -> str:
        return key

    if extra_tool:

        @agent.tool_plain
        def other() -> str:
            return ""

    return agent


def test_fingerprint_is_stable_and_follows_what_decides_a_runs_path() -> None:
    base = _agent_for_fingerprint().fingerprint()
    assert base == _agent_for_fingerprint().fingerprint()
    assert base != _agent_for_fingerprint(extra_tool=True).fingerprint()
    assert base != _agent_for_fingerprint(output_type=int).fingerprint()
    assert base != _agent_for_fingerprint(model="test:other").fingerprint()
