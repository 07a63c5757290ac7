"""What a durable run records: the run, and one row per step."""

import scripted

from perdure import Agent, DurableAgent, RunContext

agent = Agent(
    scripted.model(("charge_card", {"amount_cents": 4200}), answer="Charged $42.00."),
    name="payments",
)


@agent.tool
def charge_card(ctx: RunContext[None], amount_cents: int) -> str:
    """Charge the customer's card."""
    print(f"charging {amount_cents} cents, idempotency key {ctx.idempotency_key}")
    return "ch_0001"


durable = DurableAgent(agent, journal="shop.db")
durable.run_sync("Charge $42 for order 42", run_id="order-42")
durable.run_sync("Charge $42 for order 42", run_id="order-42")  # recorded: charges nothing

run = durable.get_run_sync("order-42")
print(f"{run.run_id}: {run.status}, {run.attempts} attempt(s), {run.usage.requests} model requests")
for step in run.steps:
    print(f"  {step.key:24} {step.describe}")
print(f"output: {run.output!r}")
