"""An approval: the run waits inside DBOS until a decision arrives, as a DBOS message to its workflow."""

import asyncio
import os

from dbos import DBOS
from perdure import Agent, RunWaiting
from perdure.dbos import DBOSAgent
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Refund issued."), name="support")  # offline stand-in for a real model


@agent.tool_plain(requires_approval=True)
def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


DBOS(
    config={
        "name": "support",
        "system_database_url": os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///support.sqlite"),
    }
)
dbos_agent = DBOSAgent(agent)


async def main() -> None:
    DBOS.launch()
    try:
        await dbos_agent.run("Refund order 42", run_id="ticket-7")
    except RunWaiting as waiting:
        print(waiting)  # the workflow keeps waiting, inside DBOS

    # Any process connected to the system database can decide (a web handler, an admin tool):
    (call,) = (await dbos_agent.get_run("ticket-7")).pending
    await dbos_agent.approve("ticket-7", call.tool_call_id, note="parcel lost by the carrier")
    print((await dbos_agent.wait("ticket-7")).output)
    DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main())
