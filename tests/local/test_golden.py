"""A golden journal, written by an earlier perdure and committed (``golden/journal-v1.db``), replayed on every run.

It holds two runs of the agent below: ``golden-completed`` (finished) and ``golden-orphan`` (its process was
SIGKILLed inside ``ship``; its owner is a process on another host whose lease expired). If the journal format, the
step keys, the step descriptions or the encoding of results change incompatibly, these tests fail: runs already
in users' journals would no longer replay. Regenerate only for a deliberate, migrated format change:
``python tests/local/golden/make_golden.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from pydantic import BaseModel

from perdure import Agent, DurableAgent
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
from perdure.models.function import AgentInfo, FunctionModel

GOLDEN = Path(__file__).parent / "golden" / "journal-v1.db"
CRASH_ENV = "PERDURE_GOLDEN_CRASH_IN_SHIP"

CALLS: list[str] = []  # every model request and tool call executed in this process


class Parcel(BaseModel):
    """What the warehouse shipped."""

    order_id: int
    tracking: str
    weight_kg: float


class Shipment(BaseModel):
    """The agent's answer."""

    order_id: int
    tracking: str
    summary: str


def _answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    CALLS.append("model")
    turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
    first = messages[0]
    assert isinstance(first, ModelRequest)
    order_id = int(str(next(p for p in first.parts if p.part_kind == "user-prompt").content).split()[-1])
    returns = {
        p.tool_name: p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    }
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart(tool_name="lookup", args={"order_id": order_id}, tool_call_id="c1")])
    if turn == 2:
        return ModelResponse(
            parts=[ToolCallPart(tool_name="ship", args={"order_id": order_id, "items": 2}, tool_call_id="c2")]
        )
    parcel = returns["ship"]
    assert isinstance(parcel, Parcel)  # a tool's recorded model result comes back as the model
    args = {
        "order_id": order_id,
        "tracking": parcel.tracking,
        "summary": f"shipped {returns['lookup']} in {parcel.weight_kg} kg",
    }
    return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args=args, tool_call_id="out")])


def build_agent() -> Agent[None, Shipment]:
    """The golden agent. Changing what it asks for changes the golden runs' path: don't."""
    agent: Agent[None, Shipment] = Agent(
        FunctionModel(_answer, model_name="golden-model"),
        name="golden-orders",
        instructions="Ship the order.",
        output_type=Shipment,
    )

    @agent.tool_plain
    def lookup(order_id: int) -> str:
        """Look an order up.

        Args:
            order_id: the order number.
        """
        CALLS.append("lookup")
        return f"order {order_id}: 2 books"

    @agent.tool_plain
    def ship(order_id: int, items: int) -> Parcel:
        """Ship an order.

        Args:
            order_id: the order number.
            items: how many items.
        """
        CALLS.append("ship")
        if os.environ.get(CRASH_ENV) == "1":
            os.kill(os.getpid(), signal.SIGKILL)  # make_golden.py: the process dies inside the tool
        return Parcel(order_id=order_id, tracking=f"TRK-{order_id}", weight_kg=0.5 * items)

    return agent


@pytest.fixture
def golden(tmp_path: Path) -> DurableAgent[None, Shipment]:
    path = tmp_path / "golden.db"
    shutil.copyfile(GOLDEN, path)
    CALLS.clear()
    return DurableAgent(build_agent(), journal=path)


def test_the_golden_journal_is_committed_whole() -> None:
    with open(GOLDEN, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"  # not a Git LFS pointer, not ignored by .gitignore


def test_a_completed_golden_run_returns_its_recorded_output_without_executing(
    golden: DurableAgent[None, Shipment],
) -> None:
    result = golden.run_sync("ship order 1", run_id="golden-completed")
    assert result.output == Shipment(order_id=1, tracking="TRK-1", summary="shipped order 1: 2 books in 1.0 kg")
    assert CALLS == []
    assert result.usage().requests == 3
    assert result.usage().tool_calls == 2
    info = golden.get_run_sync("golden-completed")
    assert (info.status, info.attempts) == ("completed", 1)
    assert [s.key for s in info.steps] == [
        "turn/1/model",
        "turn/1/tool/c1",
        "turn/2/model",
        "turn/2/tool/c2",
        "turn/3/model",
    ]


def test_the_orphaned_golden_run_is_recovered_executing_only_its_unrecorded_steps(
    golden: DurableAgent[None, Shipment],
) -> None:
    before = golden.get_run_sync("golden-orphan")
    assert before.status == "running"
    assert before.owner is not None and before.owner.startswith("golden-host:")
    assert [s.key for s in before.steps] == ["turn/1/model", "turn/1/tool/c1", "turn/2/model"]

    assert golden.recover_sync() == ["golden-orphan"]
    # ship was interrupted (at-least-once: it runs again), then the final model request; lookup is replayed.
    assert CALLS == ["ship", "model"]
    info = golden.get_run_sync("golden-orphan")
    assert info.status == "completed"
    assert info.output == {"order_id": 2, "tracking": "TRK-2", "summary": "shipped order 2: 2 books in 1.0 kg"}
    assert info.attempts == 2
    assert [(s.key, s.attempt) for s in info.steps] == [
        ("turn/1/model", 1),
        ("turn/1/tool/c1", 1),
        ("turn/2/model", 1),
        ("turn/2/tool/c2", 2),
        ("turn/3/model", 2),
    ]
    assert info.usage.requests == 3

    CALLS.clear()
    assert golden.recover_sync() == []  # nothing left to recover
    assert golden.run_sync("ship order 2", run_id="golden-orphan").output.tracking == "TRK-2"
    assert CALLS == []
