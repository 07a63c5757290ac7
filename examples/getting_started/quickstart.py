import os

from perdure import Agent, DurableAgent, RunContext

# A real model when OPENAI_API_KEY is set; without one, "test" (TestModel): it calls each tool once, then answers.
model = "openai:gpt-4.1-mini" if os.environ.get("OPENAI_API_KEY") else "test"
agent = Agent(model, name="checkout", instructions="Take payment for the order.")
charged: dict[str, int] = {}  # stands in for your payment provider, which charges once per idempotency key


@agent.tool
def charge_card(ctx: RunContext[None], amount_cents: int) -> str:
    """Charge the customer's card.

    Args:
        amount_cents: the amount, in cents.
    """
    # The key is the same on every retry and resume of this call: the bank charges once.
    charged.setdefault(ctx.idempotency_key or "", amount_cents)  # your bank: bank.charge(..., idempotency_key=...)
    return f"charged {amount_cents} cents"


durable = DurableAgent(agent)  # journal: ./perdure.db (or $PERDURE_JOURNAL)
result = durable.run_sync("Charge $12 for order 12", run_id="order-12")
print(result.output)
