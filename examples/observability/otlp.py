"""Send perdure's traces to any OTLP backend (an OpenTelemetry Collector, Jaeger, Honeycomb, Grafana...).

    python otlp.py            # a run starts and waits for an approval; this process exits
    python otlp.py approve    # another process approves and finishes it: the same trace

The exporter reads the standard OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318).
"""

import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from shop import agent

from perdure import DurableAgent, RunWaiting

provider = TracerProvider(resource=Resource.create({"service.name": "support"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

durable = DurableAgent(agent)
if sys.argv[1:] == ["approve"]:
    durable.approve_sync("return-5", "pyd_refund_1")
    print(durable.resume_sync("return-5").output)
else:
    try:
        durable.run_sync("Refund order 42", run_id="return-5")
    except RunWaiting as e:
        print(e)
provider.shutdown()  # flush the last spans before the process exits
