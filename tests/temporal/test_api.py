"""The Temporal adapter's surface: exports, persisted names, misuse errors, option levels. No server needed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta

import pytest
from temporalio.common import RetryPolicy

import perdure.temporal
from perdure import Agent, UserError
from perdure._exceptions import install_command
from perdure.models.test import TestModel
from perdure.temporal import ActivityOptions, PerdurePlugin, TemporalAgent


def make_agent(name: str = "api") -> Agent[None, str]:
    agent: Agent[None, str] = Agent(TestModel(), name=name)

    @agent.tool_plain
    def ping() -> str:
        """Ping."""
        return "pong"

    @agent.tool_plain
    def charge(cents: int) -> str:
        """Charge."""
        return "ok"

    return agent


def test_all_is_pinned() -> None:
    assert perdure.temporal.__all__ == ["ActivityOptions", "PerdurePlugin", "TemporalAdmin", "TemporalAgent", "admin"]


def test_missing_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['temporalio'] = None\n"
        "from perdure import MissingExtra\n"
        "try:\n"
        "    import perdure.temporal\n"
        "except MissingExtra as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'temporalio' is not installed" in out
    assert install_command("temporal") in out  # pip install ... perdure[temporal] from where perdure came from


def test_run_outside_a_workflow_without_a_client_refuses() -> None:
    ta = TemporalAgent(make_agent())
    with pytest.raises(UserError, match=r"needs a Temporal client: pass TemporalAgent\(agent, client=") as info:
        asyncio.run(ta.run("hello"))
    assert "never runs the agent without durability" in str(info.value)
    for method in (ta.start("hi"), ta.resume("r"), ta.wait("r"), ta.cancel("r"), ta.get_run("r"), ta.list_runs()):
        with pytest.raises(UserError, match="needs a Temporal client"):
            asyncio.run(method)
    with pytest.raises(UserError, match="needs a Temporal client"):
        ta.approve_sync("r", "c1")
    with pytest.raises(UserError, match="must be a temporalio Client or an address"):
        TemporalAgent(make_agent(), client=7233)  # type: ignore[arg-type]


def test_agent_needs_a_name() -> None:
    with pytest.raises(UserError, match="needs a name"):
        TemporalAgent(Agent(TestModel()))
    with pytest.raises(UserError, match="wraps an Agent"):
        TemporalAgent("agent")  # type: ignore[arg-type]


def test_plugin_refuses_two_agents_with_one_name() -> None:
    with pytest.raises(UserError, match="two TemporalAgents are named 'twin'"):
        PerdurePlugin(TemporalAgent(make_agent("twin")), TemporalAgent(make_agent("twin")))


def test_retrying_forever_is_refused() -> None:
    with pytest.raises(UserError, match="retries forever"):
        TemporalAgent(make_agent(), activity_options=ActivityOptions(retry_policy=RetryPolicy()))
    with pytest.raises(UserError, match=r"tool_activity_options\['ping'\].*retries forever"):
        TemporalAgent(make_agent(), tool_activity_options={"ping": ActivityOptions(retry_policy=RetryPolicy())})
    # Bounded by a schedule-to-close timeout: allowed.
    bounded = ActivityOptions(retry_policy=RetryPolicy(), schedule_to_close_timeout=timedelta(hours=1))
    TemporalAgent(make_agent(), activity_options=bounded)


def test_tool_options_must_name_tools_of_the_agent() -> None:
    with pytest.raises(UserError, match="does not have: nope"):
        TemporalAgent(make_agent(), tool_activity_options={"nope": ActivityOptions()})


def test_defaults_are_bounded_and_follow_the_agents_retry_config() -> None:
    ta = TemporalAgent(make_agent())
    model, tool = ta.config.model_options(None), ta.config.tool_options("ping")
    for options in (model, tool):
        assert options.retry_policy is not None and options.retry_policy.maximum_attempts > 0
        assert options.heartbeat_timeout == timedelta(seconds=10)
        assert options.start_to_close_timeout == timedelta(minutes=5)
    retry = ta.agent.retry_config
    assert model.retry_policy is not None
    assert model.retry_policy.maximum_attempts == retry.max_attempts
    assert model.retry_policy.initial_interval == timedelta(seconds=retry.initial_delay)


def test_options_per_agent_per_model_and_per_tool() -> None:
    ta = TemporalAgent(
        make_agent(),
        activity_options=ActivityOptions(start_to_close_timeout=timedelta(seconds=30)),
        model_activity_options={"test": ActivityOptions(heartbeat_timeout=timedelta(seconds=3))},
        tool_activity_options={"charge": ActivityOptions(retry_policy=RetryPolicy(maximum_attempts=1))},
    )
    model = ta.config.model_options(None)  # the agent's model is named "test"
    assert (model.start_to_close_timeout, model.heartbeat_timeout) == (timedelta(seconds=30), timedelta(seconds=3))
    other_model = ta.config.model_options("openai:gpt-4.1")
    assert other_model.heartbeat_timeout == timedelta(seconds=10)
    charge, ping = ta.config.tool_options("charge"), ta.config.tool_options("ping")
    assert charge.retry_policy is not None and charge.retry_policy.maximum_attempts == 1
    assert ping.retry_policy is not None and ping.retry_policy.maximum_attempts == 3
    assert charge.start_to_close_timeout == ping.start_to_close_timeout == timedelta(seconds=30)
    one_for_all = TemporalAgent(make_agent(), model_activity_options=ActivityOptions(task_queue="gpu"))
    assert one_for_all.config.model_options("anything").task_queue == "gpu"
    assert one_for_all.config.tool_options("ping").task_queue is None
