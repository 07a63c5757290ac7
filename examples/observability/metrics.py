"""perdure's metrics, read from an in-memory OpenTelemetry reader."""

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from shop import agent

from perdure import DurableAgent, RunWaiting

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

durable = DurableAgent(agent)
for run_id in ("return-2", "return-3"):
    try:
        durable.run_sync("Refund order 42", run_id=run_id)
    except RunWaiting:
        pass
durable.approve_sync("return-2", "pyd_refund_1")
durable.resume_sync("return-2")

data = reader.get_metrics_data()
assert data is not None
for metric in (m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics):
    if metric.name in ("perdure.runs", "perdure.approvals.waiting"):
        for point in metric.data.data_points:
            status = point.attributes.get("perdure.run.status", "")
            print(f"{metric.name:26} {status:10} {point.value}")
