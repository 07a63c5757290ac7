"""A durable agent on the embedded engine, configured. The worker and the scripts that start runs import it."""

from perdure import Agent, DurableAgent, RunContext
from perdure.models import RetryConfig
from perdure.testing import TestModel

agent = Agent(
    TestModel(custom_output_text="Shipped."),  # an offline stand-in for "openai:gpt-4.1-mini"
    name="fulfilment",
    retry_config=RetryConfig(max_attempts=4, initial_delay=0.5, max_delay=30),  # transient model errors
)


@agent.tool
def ship(ctx: RunContext[None], order_id: str) -> str:
    """Hand an order to the carrier."""
    return f"shipment {ctx.idempotency_key}"  # the carrier deduplicates on the key


durable = DurableAgent(
    agent,
    journal="fulfilment.db",  # default: $PERDURE_JOURNAL, or ./perdure.db
    durability="full",  # survives power loss; "normal": survives process crashes, and is faster
    lease_seconds=30,  # a run whose owner on another machine stops renewing its lease is recovered after this
)
