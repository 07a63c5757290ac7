"""An approval on Temporal: the run's workflow waits server-side until a decision arrives as a workflow update."""

import asyncio

from support import refunds

from perdure import RunWaiting


async def main() -> None:
    try:
        await refunds.run("Refund order 42", run_id="refund-42")
    except RunWaiting as waiting:
        print(waiting)  # the workflow waits, holding no worker
        call_id = waiting.pending[0]["tool_call_id"]

    # From any process, hours later:
    await refunds.approve("refund-42", call_id, note="parcel lost by the carrier")
    print((await refunds.resume("refund-42")).output)


asyncio.run(main())
