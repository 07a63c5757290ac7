import bank
from shop import agent

from perdure import DurableAgent

durable = DurableAgent(agent)  # the journal: ./perdure.db (or $PERDURE_JOURNAL)

result = durable.run_sync("Take payment for order 42.", run_id="order-42")
print(result.output)

# The same run id again: the run is finished, so its recorded result comes back. Nothing executes.
again = durable.run_sync("Take payment for order 42.", run_id="order-42")
assert again.output == result.output
print(f"charges for order-42: {len(bank.charges('order-42'))}")

for step in durable.get_run_sync("order-42").steps:
    print(f"{step.key:32} {step.kind:6} attempt {step.attempt}")
