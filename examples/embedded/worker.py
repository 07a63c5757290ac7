"""A worker in Python: executes accepted, decided and orphaned runs until SIGTERM (or Ctrl-C)."""

import asyncio
import signal

from app import durable


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    print("worker ready", flush=True)
    await durable.serve(concurrency=8, stop=stop)  # returns once the runs in hand are finished


asyncio.run(main())
