"""An approval on Prefect: the flow run is suspended (no process waits) until the decision arrives as its run
input, from the API or from the suspended flow run's form in Prefect's UI."""

from pathlib import Path

from perdure import Agent, RunWaiting
from perdure.prefect import PrefectAgent, TaskConfig
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Refund issued."), name="support")  # offline stand-in for a real model


@agent.tool_plain(requires_approval=True)
def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


prefect_agent = PrefectAgent(agent, task_config=TaskConfig(result_storage=Path("prefect-results")))

try:
    prefect_agent.run_sync("Refund order 42", run_id="ticket-7")
except RunWaiting as waiting:
    print(waiting)
    call_id = waiting.pending[0]["tool_call_id"]

# From any process, later:
prefect_agent.approve_sync("ticket-7", call_id, note="parcel lost by the carrier")
print(prefect_agent.resume_sync("ticket-7").output)  # or a worker: await prefect_agent.serve()
