"""A tool that needs a human: the run waits (holding no process) until someone decides, from anywhere."""

import scripted

from perdure import Agent, DurableAgent, RunWaiting

agent = Agent(scripted.model(("refund", {"order_id": 42, "cents": 4200}), answer="Refund issued."), name="support")


@agent.tool_plain(requires_approval=True)
def refund(order_id: int, cents: int) -> str:
    """Refund an order."""
    return f"refunded {cents} cents on order {order_id}"


durable = DurableAgent(agent)
try:
    durable.run_sync("Refund order 42, the parcel never arrived", run_id="ticket-7")
except RunWaiting as waiting:
    for call in waiting.pending:
        print(f"waiting: {call['tool_name']}({call['args']}) call id {call['tool_call_id']}")

print(durable.get_run_sync("ticket-7").status)

# Later, in any process (or `perdure approve ticket-7 call-1`):
durable.approve_sync("ticket-7", "call-1", approved=True, note="parcel lost by the carrier")
result = durable.resume_sync("ticket-7")  # or a worker (`perdure worker`) picks it up
print(result.output)
