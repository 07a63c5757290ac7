"""Run the agent on Temporal from any program: a client starts the run's workflow and waits for its result."""

import asyncio
import os

from support import support
from temporalio.client import Client

from perdure.temporal import PerdurePlugin


async def main() -> None:
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"), plugins=[PerdurePlugin(support)]
    )
    result = await support.run("Where is order 42?", client=client, run_id="support-42")
    print(result.output)
    run = await support.get_run("support-42", client=client)  # the workflow id is the run id
    print(run.status, [step.key for step in run.steps])


asyncio.run(main())
