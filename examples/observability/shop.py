"""The agent the observability examples trace: one tool, one that needs an approval."""

from perdure import Agent, RunContext
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Refunded."), name="returns")  # offline stand-in for a real model


@agent.tool
def lookup_order(ctx: RunContext[None], order_id: int) -> str:
    """Look up an order."""
    return "delivered"


@agent.tool_plain(requires_approval=True)
def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"
