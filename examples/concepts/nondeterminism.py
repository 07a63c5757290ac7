"""Code that changes the path of a run in flight is caught on replay, never silently re-executed."""

import scripted

from perdure import Agent, DurableAgent, NonDeterminismError, RunWaiting


def support_agent(refund_tool_name: str) -> Agent[None, str]:
    model = scripted.model((refund_tool_name, {"order_id": 42}), answer="Refunded.")
    agent = Agent(model, name="claims")

    @agent.tool_plain(name=refund_tool_name, requires_approval=True)
    def refund(order_id: int) -> str:
        """Refund an order."""
        return "refunded"

    return agent


# Version 1 starts a run; it waits for an approval.
v1 = DurableAgent(support_agent("refund"))
try:
    v1.run_sync("Refund order 42", run_id="ticket-8")
except RunWaiting:
    pass

# Version 2 is deployed meanwhile: the tool was renamed. The approval arrives; the run resumes on the new code.
v2 = DurableAgent(support_agent("refund_order"))
v2.approve_sync("ticket-8", "call-1")
try:
    v2.resume_sync("ticket-8")
except NonDeterminismError as e:
    print(e)
    print(f"step: {e.step_key}\nrecorded: {e.recorded}\nrequested: {e.requested}")
