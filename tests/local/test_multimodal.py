"""A prompt made of text and files, run durably: recorded once with the run, replayed exactly."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from perdure import Agent, DurableAgent, UserError
from perdure.durable.base import RunIdReused
from perdure.messages import (
    BinaryContent,
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from perdure.models.function import AgentInfo, FunctionModel
from perdure.testing import MemoryAgent

IMAGE = BinaryContent(data=os.urandom(1_000_000), media_type="image/png")


def agent(seen: list[Any]) -> Agent[None, str]:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        first = messages[0]
        assert isinstance(first, ModelRequest)
        prompt = next(p for p in first.parts if isinstance(p, UserPromptPart))
        seen.append(prompt.content)
        turns = sum(isinstance(m, ModelResponse) for m in messages)
        if turns < 4:  # four tool calls: each request sends the whole conversation, image included
            return ModelResponse(parts=[ToolCallPart(tool_name="look", args={"n": turns}, tool_call_id=f"c{turns}")])
        return ModelResponse(parts=[TextPart(content="a chart")])

    a: Agent[None, str] = Agent(FunctionModel(answer, model_name="vision"), name="vision")

    @a.tool_plain
    def look(n: int) -> str:
        """Look again."""
        return f"look {n}"

    return a


def test_a_prompt_with_an_image_is_recorded_once_and_replayed(tmp_path: Path) -> None:
    seen: list[Any] = []
    journal = tmp_path / "j.db"
    durable = DurableAgent(agent(seen), journal=journal)
    result = durable.run_sync(["What does this chart show?", IMAGE], run_id="chart-1")
    assert result.output == "a chart"
    assert len(seen) == 5 and all(s == ["What does this chart show?", IMAGE] for s in seen)
    info = durable.get_run_sync("chart-1")
    assert info.prompt == "What does this chart show?"  # the text, for listings and spans

    # Recorded once, with the run; five model requests and four tool calls added no copy of it.
    conn = sqlite3.connect(journal)
    (input_bytes,) = conn.execute("SELECT length(input) FROM perdure_runs WHERE run_id = 'chart-1'").fetchone()
    (step_bytes,) = conn.execute("SELECT sum(length(result)) FROM perdure_steps WHERE run_id = 'chart-1'").fetchone()
    conn.close()
    assert 1_300_000 < input_bytes < 1_400_000  # base64 of 1 MB, once
    assert step_bytes < 10_000

    # Replayed from the journal in a new agent: nothing asks the model again, the image comes back exactly.
    again: list[Any] = []
    with pytest.warns(RunIdReused, match="already exists with another prompt"):
        replayed = DurableAgent(agent(again), journal=journal).run_sync(["ignored: recorded"], run_id="chart-1")
    assert again == []
    first = replayed.all_messages()[0]
    assert isinstance(first, ModelRequest)
    assert [p.content for p in first.parts if isinstance(p, UserPromptPart)] == [["What does this chart show?", IMAGE]]


def test_the_memory_engine_takes_the_same_prompt() -> None:
    seen: list[Any] = []
    durable = MemoryAgent(agent(seen))
    url = ImageUrl(url="https://example.invalid/chart.png")
    assert durable.run_sync(["Describe", url], run_id="m-1").output == "a chart"
    assert seen[0] == ["Describe", url]


def test_a_prompt_of_something_else_is_a_user_error(tmp_path: Path) -> None:
    durable = DurableAgent(agent([]), journal=tmp_path / "j.db")
    with pytest.raises(UserError, match="a prompt is a string or a sequence of strings and files"):
        durable.run_sync(["text", 42], run_id="bad")  # type: ignore[list-item]
    assert durable.list_runs_sync() == []  # nothing accepted
