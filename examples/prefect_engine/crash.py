"""A process is killed mid-run; another process resumes the same flow run: recorded steps are cache hits.

python crash.py            # run order-7: the process is killed inside charge_card, after the charge
python crash.py recover    # recover(): the run's owner is dead, so the run is resumed here
"""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from perdure import Agent, RunContext
from perdure.prefect import PrefectAgent, TaskConfig
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
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the charge, before its result was persisted
    return "ch_0001"


prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=Path("prefect-results")))

if sys.argv[1:] == ["recover"]:
    print("recovered:", asyncio.run(prefect_agent.recover()))
    result = prefect_agent.resume_sync("order-7")  # finished now: its recorded result
    ledger = json.loads(LEDGER.read_text())
    print(result.output, f"charge_card called {ledger['calls']} times, {len(ledger['charges'])} charge")
else:
    prefect_agent.run_sync("Take payment for order 7", run_id="order-7")
