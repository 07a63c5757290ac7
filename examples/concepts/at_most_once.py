"""An at-most-once tool is never run twice: after a crash inside it, the model is told its outcome is unknown.

python at_most_once.py            # the process is killed inside wire_transfer
python at_most_once.py recover    # the run continues; wire_transfer is not called again
"""

import os
import signal
import sys
from pathlib import Path

import scripted

from perdure import Agent, DurableAgent
from perdure.messages import ToolReturnPart

agent = Agent(
    scripted.model(("wire_transfer", {"iban": "PT50000201231234567890154", "cents": 990000}), answer="Checked."),
    name="treasury",
)


@agent.tool_plain(side_effects="at_most_once")
def wire_transfer(iban: str, cents: int) -> str:
    """Send a wire transfer. The bank offers no idempotency key: a transfer must never be sent twice."""
    with open("transfers.log", "a") as log:  # stands in for the bank
        log.write(f"{iban} {cents}\n")
    if sys.argv[1:] != ["recover"]:
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the bank got the order, before perdure knew
    return "sent"


durable = DurableAgent(agent)
if sys.argv[1:] == ["recover"]:
    durable.recover_sync()
    result = durable.resume_sync("transfer-1")  # finished by recover(): its recorded result
    told = [p.content for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    print("the model was told:", told[0])
    print("transfers sent:", len(Path("transfers.log").read_text().splitlines()))
else:
    durable.run_sync("Pay the supplier", run_id="transfer-1")
