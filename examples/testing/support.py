"""The agent under test. In production it talks to a real model; its tests give it another one."""

from perdure import Agent

agent = Agent("openai:gpt-4.1-mini", name="helpdesk", instructions="Help with orders. Refunds need approval.")


@agent.tool_plain
def order_status(order_id: int) -> str:
    """The delivery status of an order."""
    return "lost by the carrier" if order_id == 42 else "delivered"


@agent.tool_plain(requires_approval=True)
def refund(order_id: int) -> str:
    """Refund an order."""
    return f"order {order_id} refunded"
