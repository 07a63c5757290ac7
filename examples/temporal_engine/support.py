"""Agents on Temporal. The worker and the programs that start runs import this module."""

import os
from datetime import timedelta

from temporalio.common import RetryPolicy

from perdure import Agent
from perdure.temporal import ActivityOptions, TemporalAgent
from perdure.testing import TestModel

TASK_QUEUE = "support"
ADDRESS = os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")

agent = Agent(TestModel(custom_output_text="Order 42 has shipped."), name="support")  # offline stand-in model


@agent.tool_plain
def order_status(order_id: int) -> str:
    """The delivery status of an order."""
    return "shipped"


support = TemporalAgent(
    agent,
    client=ADDRESS,  # connected when a run is started or inspected from this process
    task_queue=TASK_QUEUE,
    activity_options=ActivityOptions(start_to_close_timeout=timedelta(minutes=2)),  # every step of this agent
    tool_activity_options={"order_status": ActivityOptions(retry_policy=RetryPolicy(maximum_attempts=5))},
)

refund_agent = Agent(TestModel(custom_output_text="Refund issued."), name="refunds")


@refund_agent.tool_plain(requires_approval=True)
def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


refunds = TemporalAgent(refund_agent, client=ADDRESS, task_queue=TASK_QUEUE)
