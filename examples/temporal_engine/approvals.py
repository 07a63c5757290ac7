"""An approval on Temporal: the run's workflow waits server-side until a decision arrives as a workflow update."""

import asyncio
import os

from support import refunds
from temporalio.client import Client

from perdure import RunWaiting
from perdure.temporal import PerdurePlugin


async def main() -> None:
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"), plugins=[PerdurePlugin(refunds)]
    )
    try:
        await refunds.run("Refund order 42", client=client, run_id="refund-42")
    except RunWaiting as waiting:
        print(waiting)  # the workflow waits, holding no worker
        call_id = waiting.pending[0]["tool_call_id"]

    # From any process with a client, hours later:
    await refunds.approve("refund-42", call_id, note="parcel lost by the carrier", client=client)
    print((await refunds.resume("refund-42", client=client)).output)


asyncio.run(main())
