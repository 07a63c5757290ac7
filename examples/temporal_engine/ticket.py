"""An agent run inside a workflow of your own: it is part of that workflow's history.

The worker registers SupportTicket (worker.py); `python ticket.py` starts one and prints its result.
"""

import asyncio

from support import ADDRESS, TASK_QUEUE, support
from temporalio import workflow
from temporalio.client import Client

from perdure.temporal import PerdurePlugin


@workflow.defn
class SupportTicket:
    @workflow.run
    async def run(self, order_id: int) -> str:
        answer = await support.run(f"Where is order {order_id}?")  # inside a workflow: part of it
        return f"ticket closed: {answer.output}"


async def main() -> None:
    client = await Client.connect(ADDRESS, plugins=[PerdurePlugin(support)])
    print(await client.execute_workflow(SupportTicket.run, 42, id="ticket-42", task_queue=TASK_QUEUE))


if __name__ == "__main__":
    asyncio.run(main())
