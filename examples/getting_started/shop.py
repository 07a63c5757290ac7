"""The agent of the getting-started guide: it takes payment for an order."""

import os

import bank
import offline_model

from perdure import Agent, RunContext

INSTRUCTIONS = "Take payment for the order: look it up, charge the card, then email the receipt."

# A real model when OPENAI_API_KEY is set; without one, a scripted stand-in (offline_model.py) that calls the
# same tools, so the guide runs anywhere.
MODEL = "openai:gpt-4.1-mini" if os.environ.get("OPENAI_API_KEY") else offline_model.model

agent = Agent(MODEL, name="payments", instructions=INSTRUCTIONS)


@agent.tool_plain
def lookup_order(order_id: int) -> dict[str, int]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"order_id": order_id, "amount_cents": 4200}


# --8<-- [start:charge]
@agent.tool
def charge_card(ctx: RunContext[None], amount_cents: int) -> str:
    """Charge the customer's card; returns the charge id.

    Args:
        amount_cents: the amount, in cents.
    """
    # The key is the same on every retry and resume of this call: the bank charges once.
    return bank.charge(amount_cents, idempotency_key=ctx.idempotency_key, reference=ctx.run_id)


# --8<-- [end:charge]


@agent.tool_plain
def send_receipt(charge_id: str) -> str:
    """Email the receipt of a charge.

    Args:
        charge_id: the charge id returned by charge_card.
    """
    return f"receipt for {charge_id} sent"
