"""A durable agent on Prefect: each run is a flow run; each model request and tool call a task whose result is
persisted and cached under (run id, step key). Needs a Prefect server: PREFECT_API_URL."""

from pathlib import Path

from perdure import Agent, RunContext
from perdure.prefect import PrefectAgent, TaskConfig
from perdure.testing import TestModel

agent = Agent(TestModel(custom_output_text="Refunded."), name="refunds")  # offline stand-in for a real model


@agent.tool
def refund(ctx: RunContext[None], order_id: int) -> str:
    """Refund an order."""
    return f"refund {ctx.idempotency_key}"  # the payment provider deduplicates on the key


prefect_agent = PrefectAgent(
    agent,
    task_config=TaskConfig(result_storage=Path("prefect-results")),  # every process that resumes runs reads it
)

if __name__ == "__main__":
    result = prefect_agent.run_sync("Refund order 42", run_id="refund-42")
    print(result.output)
    run = prefect_agent.get_run_sync("refund-42")
    print(run.status, [step.key for step in run.steps])
