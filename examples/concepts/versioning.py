"""Ship a new version of an agent while runs of the old one are in flight."""

import scripted

from perdure import Agent, DurableAgent, RunWaiting

IN_FLIGHT = ["pending", "running", "waiting"]


def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


def escalate(order_id: int) -> str:
    """Hand the ticket to a human."""
    return "escalated"


def build(name: str, *tools: object) -> Agent[None, str]:
    agent = Agent(scripted.model(("refund", {"order_id": 42}), answer="Refunded."), name=name)
    for tool in tools:
        agent.tool_plain(requires_approval=tool is refund)(tool)
    return agent


v1 = DurableAgent(build("billing", refund))  # deployed: a run of it is waiting for an approval
try:
    v1.run_sync("Refund order 42", run_id="ticket-4")
except RunWaiting:
    pass

# The next version adds a tool. Which runs in flight were started by other code than it?
next_version = build("billing", refund, escalate).fingerprint()
print("would not replay:", [r.run_id for r in v1.list_runs_sync(status=IN_FLIGHT) if r.fingerprint != next_version])

# So it ships under a new name, and v1 stays deployed until its runs are finished.
v2 = DurableAgent(build("billing-v2", refund, escalate))
v1.approve_sync("ticket-4", "call-1")
print(v1.resume_sync("ticket-4").output)
print("billing in flight:", [r.run_id for r in v1.list_runs_sync(status=IN_FLIGHT)], "-> retire v1")
