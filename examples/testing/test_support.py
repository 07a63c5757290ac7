"""Tests of the support agent, offline: TestModel and FunctionModel stand in for the model."""

from pathlib import Path

import pytest
from support import agent

from perdure import ApprovalRequired, DurableAgent, RunWaiting
from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.testing import AgentInfo, FunctionModel, TestModel


def test_the_tools_answer() -> None:
    # TestModel calls the tools it is given (here one), with arguments made from their schemas, then answers.
    result = agent.run_sync("Where is my order?", model=TestModel(call_tools=["order_status"]))
    assert result.output == '{"order_status": "delivered"}'
    assert result.usage().tool_calls == 1


def test_a_lost_parcel_is_reported() -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # A scripted model: look up order 42, then repeat what the tool said.
        last = messages[-1]
        if isinstance(last, ModelRequest) and isinstance(last.parts[0], ToolReturnPart):
            return ModelResponse(parts=[TextPart(content=f"Your order was {last.parts[0].content}.")])
        return ModelResponse(parts=[ToolCallPart(tool_name="order_status", args={"order_id": 42})])

    result = agent.run_sync("Where is order 42?", model=FunctionModel(model))
    assert result.output == "Your order was lost by the carrier."


def test_a_plain_run_cannot_wait_for_an_approval() -> None:
    with pytest.raises(ApprovalRequired):
        agent.run_sync("Refund order 42", model=TestModel(call_tools=["refund"]))


def test_a_refund_waits_for_a_human(tmp_path: Path) -> None:
    durable = DurableAgent(agent, journal=tmp_path / "journal.db")
    with pytest.raises(RunWaiting) as waiting:
        durable.run_sync("Refund order 42", run_id="t-1", model="test")  # "test": TestModel, by name
    (call,) = waiting.value.pending
    assert call["tool_name"] == "refund"

    durable.approve_sync("t-1", call["tool_call_id"])
    result = durable.resume_sync("t-1")
    assert "refunded" in result.output
