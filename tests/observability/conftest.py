"""The OpenTelemetry SDK, in memory, configured for one test (perdure itself only uses the API)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from perdure import observability

Tree = list[tuple[str, Any]]


@dataclass
class Telemetry:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def configure(self, *, include_content: bool = False) -> None:
        observability.configure(
            include_content=include_content, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def tree(self) -> Tree:
        """The finished spans as ``[(name, [children...])]``, children in start order."""
        spans = sorted(self.spans(), key=lambda s: s.start_time or 0)
        ids = {s.context.span_id for s in spans if s.context is not None}

        def children(parent: int | None) -> Tree:
            return [
                (s.name, children(s.context.span_id if s.context else None))
                for s in spans
                if (s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None) == parent
            ]

        return children(None)

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, value)`` of each data point of metric ``name`` (histograms: their count)."""
        data = self.reader.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for p in metric.data.data_points:
                        if isinstance(p, HistogramDataPoint):
                            out.append((dict(p.attributes or {}), p.count))
                        elif isinstance(p, NumberDataPoint):
                            out.append((dict(p.attributes or {}), p.value))
        return out

    def total(self, name: str, **attributes: Any) -> Any:
        """The sum of metric ``name`` over the points whose attributes include ``attributes``."""
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        return sum(v for attrs, v in self.points(name) if wanted.items() <= attrs.items())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    t = Telemetry(exporter, reader, tracer_provider, meter_provider)
    t.configure()
    try:
        yield t
    finally:
        observability.configure()  # back to the global (no-op) providers for the tests that follow
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "perdure.db")
