from shop import agent

result = agent.run_sync("Take payment for order 42.")
print(result.output)
print(result.usage())
