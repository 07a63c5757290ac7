import bank  # your payment provider's client

from perdure import Agent, DurableAgent, RunContext

agent = Agent("openai:gpt-4.1-mini", name="payments", instructions="Take payment for the order.")


@agent.tool
def charge_card(ctx: RunContext[None], amount_cents: int) -> str:
    """Charge the customer's card.

    Args:
        amount_cents: the amount, in cents.
    """
    # The key is the same on every retry and resume of this call: the bank charges once.
    return bank.charge(amount_cents, idempotency_key=ctx.idempotency_key or "")


durable = DurableAgent(agent)  # journal: ./perdure.db (or $PERDURE_JOURNAL)
result = durable.run_sync("Charge $42 for order 42", run_id="order-42")
print(result.output)
