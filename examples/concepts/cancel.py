"""Cancel a run from anywhere: it stops at its next step boundary."""

import asyncio

import scripted

from perdure import Agent, DurableAgent, RunCancelled

agent = Agent(
    scripted.model(("crawl", {"site": "example.com"}), ("crawl", {"site": "example.org"}), answer="Done."),
    name="crawler",
)


crawling = asyncio.Event()


@agent.tool_plain
async def crawl(site: str) -> str:
    """Crawl a site (slowly)."""
    crawling.set()
    await asyncio.sleep(0.5)
    return f"crawled {site}"


durable = DurableAgent(agent, poll_interval=0.05)


async def main() -> None:
    running = asyncio.create_task(durable.run("Crawl both sites", run_id="crawl-1"))
    await crawling.wait()  # the first crawl is under way
    await durable.cancel("crawl-1")  # from any process: `perdure runs cancel crawl-1`
    try:
        await running
    except RunCancelled as e:
        print(e)
    run = await durable.get_run("crawl-1")
    print(run.status, [step.key for step in run.steps])


asyncio.run(main())
