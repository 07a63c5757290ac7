"""perdure's spans, printed from an in-memory OpenTelemetry exporter."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shop import agent

from perdure import DurableAgent, RunWaiting

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # what any OpenTelemetry setup does; perdure needs nothing more

durable = DurableAgent(agent)
try:
    durable.run_sync("Refund order 42", run_id="return-1")  # attempt 1: waits for an approval
except RunWaiting:
    pass
durable.approve_sync("return-1", "pyd_refund_1")
durable.resume_sync("return-1")  # attempt 2: replays the first model request, executes the rest

spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
for span in spans:
    attributes = span.attributes or {}
    status = attributes.get("perdure.run.status")
    print(f"{span.name:26} attempt {attributes['perdure.attempt']}" + (f", {status}" if status else ""))
print("traces:", len({span.context.trace_id for span in spans if span.context}))
