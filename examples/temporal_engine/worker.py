"""A Temporal worker for the agents: it executes their workflows and activities until Ctrl-C or SIGTERM."""

import asyncio
import signal

from support import ADDRESS, TASK_QUEUE, refunds, support
from temporalio.client import Client
from temporalio.worker import Worker
from ticket import SupportTicket

from perdure.temporal import PerdurePlugin


async def main() -> None:
    client = await Client.connect(ADDRESS, plugins=[PerdurePlugin(support, refunds)])
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    # The plugin registers each agent's workflow and activities; SupportTicket is a workflow of your own.
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[SupportTicket]):
        print("worker ready", flush=True)
        await stop.wait()


asyncio.run(main())
