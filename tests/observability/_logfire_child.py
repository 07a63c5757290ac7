"""Child process of test_logfire: Logfire configured offline as the OpenTelemetry SDK, then perdure runs.

Prints one JSON line: the spans Logfire processed, and the names of the metrics it collected.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings

import logfire
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from perdure import DurableAgent, RunWaiting

from ._agents import PROMPT, approval_agent, lookup_agent
from ._export import span_record


def main(journal: str) -> None:
    warnings.simplefilter("error")  # a warning from Logfire about perdure's spans fails the test
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    # Everything a user writes to send perdure's telemetry to Logfire; offline here.
    logfire.configure(
        send_to_logfire=False,
        console=False,
        service_name="perdure-test",
        additional_span_processors=[SimpleSpanProcessor(spans)],
        metrics=logfire.MetricsOptions(additional_readers=[metrics]),
    )

    lookup_agent().run_sync(PROMPT)
    durable = DurableAgent(approval_agent(), journal=journal)
    try:
        durable.run_sync("refund order 42", run_id="r1")
    except RunWaiting:
        pass
    durable.approve_sync("r1", "r1", approved=True)
    asyncio.run(durable.resume("r1"))

    data = metrics.get_metrics_data()
    names = (
        sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}) if data else []
    )
    print(json.dumps({"spans": [span_record(s) for s in spans.get_finished_spans()], "metrics": names}, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
