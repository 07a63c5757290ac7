"""Misuse of the DBOS adapter fails early with a ``UserError`` that says what to do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from dbos import DBOS
from perdure import Agent, ToolError, UserError
from perdure._exceptions import install_command
from perdure.dbos import DBOSAgent
from perdure.messages import ModelMessage, ModelResponse, TextPart
from perdure.models.function import AgentInfo, FunctionModel

from . import agents


def test_agent_without_a_name(launch: Callable[[], None]) -> None:
    with pytest.raises(UserError, match=r"needs a name.*Agent\(\.\.\., name="):
        DBOSAgent(Agent(FunctionModel(lambda m, i: ModelResponse(parts=[]))))


def test_a_name_given_to_the_adapter_is_enough(launch: Callable[[], None]) -> None:
    unnamed = Agent(agents.plain().model)
    assert DBOSAgent(unnamed, name="named-here").workflow_name == "perdure:named-here"


def test_two_agents_with_one_name(launch: Callable[[], None]) -> None:
    DBOSAgent(agents.plain("support"))
    with pytest.raises(UserError, match=r"agent named 'support' is already registered"):
        DBOSAgent(agents.plain("support"))


def test_constructing_after_launch(launch: Callable[[], None]) -> None:
    launch()
    with pytest.raises(UserError, match=r"after DBOS.launch\(\).*Construct every DBOSAgent first"):
        DBOSAgent(agents.plain("late"))


def test_running_before_launch(launch: Callable[[], None]) -> None:
    dbos_agent = DBOSAgent(agents.plain())
    with pytest.raises(UserError, match=r"DBOS is not launched"):
        dbos_agent.run_sync("hi")


def test_not_an_agent_and_conflicting_options(launch: Callable[[], None]) -> None:
    with pytest.raises(UserError, match="wraps an Agent"):
        DBOSAgent("support")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="deps or deps_factory"):
        DBOSAgent(agents.plain("a"), deps=1, deps_factory=lambda run_id: 2)
    with pytest.raises(UserError, match="cannot set 'name'"):
        DBOSAgent(agents.plain("b"), step_config={"name": "x"})
    with pytest.raises(UserError, match=r"cannot set retries_allowed.*retry_config=RetryConfig"):
        DBOSAgent(agents.plain("c"), step_config={"retries_allowed": True, "max_attempts": 3})


def test_a_run_id_of_another_agent(launch: Callable[[], None]) -> None:
    first, second = DBOSAgent(agents.plain("first")), DBOSAgent(agents.plain("second"))
    launch()
    first.run_sync("hi", run_id="shared")
    with pytest.raises(UserError, match=r"run 'shared' exists and is not a run of agent 'second'"):
        second.run_sync("hi", run_id="shared")


def test_non_serializable_tool_result_fails_the_run_naming_tool_and_type(launch: Callable[[], None]) -> None:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if agents.turn(messages) == 1:
            return ModelResponse(parts=[agents.call("opens", "c1")])
        return ModelResponse(parts=[TextPart(content="unreachable")])

    agent = Agent(FunctionModel(script), name="sockets")

    @agent.tool_plain
    def opens():  # type: ignore[no-untyped-def]  # no annotation: the value's own type decides
        """Return something that is not JSON."""
        return threading.Lock()

    dbos_agent = DBOSAgent(agent)
    launch()
    # The same error as on the embedded engine: the run fails at that step (a ToolError naming tool and type).
    with pytest.raises(ToolError, match=r"tool 'opens' returned a lock, which cannot be serialized to JSON"):
        dbos_agent.run_sync("go", run_id="unserializable")
    info = dbos_agent.get_run_sync("unserializable")
    assert info.status == "failed"
    assert info.error is not None and info.error["type"] == "ToolError"


def test_sync_methods_refuse_a_running_loop(launch: Callable[[], None]) -> None:
    dbos_agent = DBOSAgent(agents.plain())
    launch()

    async def main() -> None:
        with pytest.raises(UserError, match=r"run_sync\(\) cannot be called from a running event loop"):
            dbos_agent.run_sync("hi")

    asyncio.run(main())


def test_unknown_runs_and_calls(launch: Callable[[], None]) -> None:
    dbos_agent = DBOSAgent(agents.plain())
    launch()
    dbos_agent.run_sync("hi", run_id="done")
    with pytest.raises(UserError, match="no run 'nope'"):
        dbos_agent.get_run_sync("nope")
    with pytest.raises(UserError, match="no perdure run 'nope'"):
        dbos_agent.cancel_sync("nope")
    with pytest.raises(UserError, match=r"run 'done' has no call 'c9' waiting for a decision.*waiting: none"):
        dbos_agent.approve_sync("done", "c9")
    with pytest.raises(UserError, match="unknown run status 'stuck'"):
        dbos_agent.list_runs_sync(status="stuck")


def test_missing_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['dbos'] = None\n"
        "try:\n    import perdure.dbos\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == (
        f"MissingExtra 'dbos' is not installed; it comes with perdure's 'dbos' extra: {install_command('dbos')}"
    )


def test_dbos_is_not_imported_by_perdure() -> None:
    code = "import sys, perdure; print('dbos' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_public_api_is_pinned() -> None:
    import perdure.dbos

    assert perdure.dbos.__all__ == ["DBOSAdmin", "DBOSAgent", "admin"]
    assert DBOS is not None
