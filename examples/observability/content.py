"""Prompts, messages, tool arguments and results on spans: off by default; on for the process, or per agent."""

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shop import agent

from perdure import observability
from perdure.testing import TestModel

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

# This process's setting (tracer_provider: perdure's spans go there, not to the global provider).
observability.configure(include_content=True, tracer_provider=provider)
# One agent's setting, over the process's: observability.configure_agent(agent, include_content=False)

agent.run_sync("Where is order 42?", model=TestModel(call_tools=["lookup_order"]))
for span in exporter.get_finished_spans():
    attributes = span.attributes or {}
    content = attributes.get("perdure.run.prompt") or attributes.get("gen_ai.tool.call.arguments")
    if content:
        print(f"{span.name}: {content}")
