"""Kill a run in the middle of a tool call, then finish it in a new process.

python crash.py            # starts run order-7; the process is killed inside send_receipt
python crash.py recover    # a new process recovers order-7 from the journal
"""

import os
import signal
import sys
from pathlib import Path

import bank
import shop

from perdure import Agent, DurableAgent

agent = Agent(
    shop.MODEL,
    name="payments-crash",
    instructions=shop.INSTRUCTIONS,
    tools=[shop.lookup_order, shop.charge_card],
)


@agent.tool_plain
def send_receipt(charge_id: str) -> str:
    """Email the receipt of a charge.

    Args:
        charge_id: the charge id returned by charge_card.
    """
    if not Path("crashed-once").exists():
        Path("crashed-once").touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies here: an OOM kill, a deploy, a power cut
    return f"receipt for {charge_id} sent"


durable = DurableAgent(agent)

if sys.argv[1:] == ["recover"]:
    print("recovered:", durable.recover_sync())
    run = durable.get_run_sync("order-7")
    for step in run.steps:
        print(f"{step.key:32} executed in attempt {step.attempt}")
    print(run.output)
    print(f"charges for order-7: {len(bank.charges('order-7'))}")
else:
    durable.run_sync("Take payment for order 7.", run_id="order-7")
