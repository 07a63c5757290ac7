"""Accept runs without executing them: a worker (`perdure worker app:durable`, or worker.py) executes them."""

import asyncio

from app import durable


async def main() -> None:
    for order in ("A-1", "A-2", "A-3"):
        run_id = await durable.start(f"Ship order {order}", run_id=f"ship-{order}")
        print("accepted", run_id)


asyncio.run(main())
