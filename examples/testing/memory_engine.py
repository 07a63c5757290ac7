from perdure import Agent
from perdure.testing import MemoryAgent, TestModel

agent = Agent(TestModel(), name="memory-demo")
durable = MemoryAgent(agent)  # durable runs kept in memory: nothing on disk, nothing to clean up

first = durable.run_sync("Hello", run_id="memory-1")
again = durable.run_sync("Hello", run_id="memory-1")  # recorded: returned, nothing executes again
assert again.output == first.output
print(durable.get_run_sync("memory-1").status)
