"""Run the agent on Temporal from any program: the run's workflow starts, a worker executes it, this waits."""

import asyncio

from support import support


async def main() -> None:
    result = await support.run("Where is order 42?", run_id="support-42")
    print(result.output)
    run = await support.get_run("support-42")  # the workflow id is the run id
    print(run.status, [step.key for step in run.steps])


asyncio.run(main())
