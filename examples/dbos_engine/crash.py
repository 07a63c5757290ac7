"""A process is killed mid-run; the next process that launches DBOS finishes the run.

python crash.py    # run order-7: the process is killed inside charge_card, after the charge
python crash.py    # DBOS.launch() recovers order-7; this process waits for its result
"""

import asyncio
import json
import os
import signal
from pathlib import Path

from dbos import DBOS
from perdure import Agent, RunContext
from perdure.dbos import DBOSAgent
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Charged."), name="payments")  # offline stand-in for a real model
LEDGER = Path("ledger.json")  # stands in for the payment provider, which deduplicates on the idempotency key


@agent.tool
def charge_card(ctx: RunContext[None], amount_cents: int) -> str:
    """Charge the customer's card."""
    ledger = json.loads(LEDGER.read_text()) if LEDGER.exists() else {"calls": 0, "charges": {}}
    ledger["calls"] += 1
    ledger["charges"].setdefault(ctx.idempotency_key, amount_cents)
    LEDGER.write_text(json.dumps(ledger))
    if ledger["calls"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the charge, before DBOS recorded the step
    return "ch_0001"


DBOS(
    config={
        "name": "payments",
        "system_database_url": os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///payments.sqlite"),
    }
)
dbos_agent = DBOSAgent(agent)


async def main() -> str:
    DBOS.launch()  # the second time: "Recovering 1 workflows"
    result = await dbos_agent.run("Take payment for order 7", run_id="order-7")  # an existing id: that run
    DBOS.destroy()
    return result.output


if __name__ == "__main__":
    output = asyncio.run(main())
    ledger = json.loads(LEDGER.read_text())
    print(output, f"charge_card called {ledger['calls']} times, {len(ledger['charges'])} charge")
