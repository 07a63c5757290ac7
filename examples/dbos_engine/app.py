"""A durable agent on DBOS: each run is a DBOS workflow in a PostgreSQL (or SQLite) system database."""

import asyncio
import os

from dbos import DBOS
from perdure import Agent, RunContext
from perdure.dbos import DBOSAgent
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Refunded."), name="refunds")  # offline stand-in for a real model


@agent.tool
def refund(ctx: RunContext[None], order_id: int) -> str:
    """Refund an order."""
    return f"refund {ctx.idempotency_key}"  # the payment provider deduplicates on the key


DBOS(
    config={
        "name": "refunds",
        # PostgreSQL for many machines (postgresql://user:password@host:5432/refunds), SQLite for one
        "system_database_url": os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///refunds.sqlite"),
    }
)
dbos_agent = DBOSAgent(agent)  # before DBOS.launch(): it registers the agent's workflow


async def main() -> None:
    DBOS.launch()  # recovers the pending runs of this application
    result = await dbos_agent.run("Refund order 42", run_id="refund-42")
    print(result.output)
    run = await dbos_agent.get_run("refund-42")
    print(run.status, [step.key for step in run.steps])
    DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main())
