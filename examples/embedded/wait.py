"""Wait for a run that any process executes, then read what the journal holds about it."""

import asyncio

from app import durable


async def main() -> None:
    result = await durable.wait("ship-A-1", timeout=30)
    print(result.output)
    run = await durable.get_run("ship-A-1")
    print(run.status, f"{len(run.steps)} steps", f"{run.usage.tool_calls} tool call(s)")


asyncio.run(main())
