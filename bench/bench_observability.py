"""Tracing overhead on the embedded engine (issue 7): the OTel SDK installed with a no-op exporter, per step."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import STEPS_PER_RUN, median, ms, workload_agent
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from perdure import DurableAgent, observability


class _NoopExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _sdk() -> tuple[TracerProvider, MeterProvider]:
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(_NoopExporter()))
    return tracer, MeterProvider(metric_readers=[InMemoryMetricReader()])


def overhead(directory: Path, durability: str, batches: int = 15, runs: int = 20) -> dict[str, float]:
    agent = workload_agent(f"obs-{durability}")
    durable = DurableAgent(agent, journal=directory / f"obs-{durability}.db", durability=durability)  # type: ignore[arg-type]
    tracer, meter = _sdk()
    counter = iter(range(10**9))

    async def batch(traced: bool) -> float:
        if traced:
            observability.configure(tracer_provider=tracer, meter_provider=meter)
        else:
            observability.configure()
        t = time.perf_counter()
        for _ in range(runs):
            await durable.run("go", run_id=f"r{next(counter)}")
        return (time.perf_counter() - t) / runs

    async def main() -> dict[str, float]:
        await batch(False)
        await batch(True)
        off, on = [], []
        for _ in range(batches):
            off.append(await batch(False))
            on.append(await batch(True))
        observability.configure()
        return {"off": median(off) / STEPS_PER_RUN, "on": median(on) / STEPS_PER_RUN}

    return asyncio.run(main())


def run() -> str:
    directory = Path(tempfile.mkdtemp(prefix="perdure-bench-obs-"))
    try:
        full = overhead(directory, "full")
        normal = overhead(directory, "normal")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lines = [
        "## Observability (issue 7)",
        "",
        "Durable step cost with the OpenTelemetry SDK configured (spans through a no-op exporter, metrics into an "
        "in-memory reader) against no SDK, batches interleaved, on the 5-tool workload.",
        "",
        "| durability | step, no SDK | step, SDK + no-op exporter | tracing overhead | goal |",
        "|---|---|---|---|---|",
    ]
    for name, r in (("full (default)", full), ("normal", normal)):
        lines.append(
            f"| {name} | {ms(r['off'])} | {ms(r['on'])} | {(r['on'] - r['off']) / r['off'] * 100:.1f}% | <= 10% |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
