"""Process-wide settings: which tracer and meter providers, and whether content goes on spans."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from .._spec import AgentSpec, SupportsSpec
from . import _attributes as A

__all__ = ["configure", "configure_agent"]

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Step latencies run from a tenth of a millisecond (a replay-free local tool) to minutes (a slow model).
_DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
)  # fmt: skip
# The GenAI semantic conventions' advice for gen_ai.client.token.usage.
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))


@dataclass(frozen=True)
class Instruments:
    runs: metrics.Counter
    attempts: metrics.Counter
    step_duration: metrics.Histogram
    model_retries: metrics.Counter
    approvals_waiting: metrics.UpDownCounter
    token_usage: metrics.Histogram


class _Settings:
    def __init__(self) -> None:
        self.include_content = _content_from_env()
        self.tracer_provider: trace.TracerProvider | None = None
        self.meter_provider: metrics.MeterProvider | None = None
        self.tracer: trace.Tracer | None = None
        self.instruments: Instruments | None = None
        self.per_agent: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _content_from_env() -> bool:
    return os.environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")


_settings = _Settings()


def configure(
    *,
    include_content: bool | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Set how perdure reports to OpenTelemetry, for this process. Each call replaces the whole setting.

    perdure needs no configuration: it uses the global tracer and meter providers, which are no-ops until an
    OpenTelemetry SDK (or Logfire) is configured. Here you can:

    * ``include_content=True``: put prompts, messages, tool arguments and results, and run outputs on spans.
      Off by default (they may hold personal data); ``None`` reads the standard
      ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` environment variable.
      ``configure_agent(agent, include_content=...)`` overrides this for one agent.
    * ``tracer_provider`` / ``meter_provider``: send perdure's telemetry to these instead of the global ones.

    ::

        from perdure import observability

        observability.configure(include_content=True)
    """
    _settings.include_content = _content_from_env() if include_content is None else include_content
    _settings.tracer_provider = tracer_provider
    _settings.meter_provider = meter_provider
    _settings.tracer = None
    _settings.instruments = None


def configure_agent(agent: Any, *, include_content: bool | None) -> None:
    """Override ``include_content`` for one agent (an ``Agent``, or an engine's wrapper of one); ``None`` clears.

    ::

        observability.configure_agent(support_agent, include_content=True)
    """
    target = _agent_of(agent)
    if include_content is None:
        _settings.per_agent.pop(target, None)
    else:
        _settings.per_agent[target] = include_content


def _agent_of(agent: Any) -> Any:
    if isinstance(agent, SupportsSpec):
        return agent
    inner = getattr(agent, "agent", None)
    if isinstance(inner, SupportsSpec):
        return inner
    from .._exceptions import UserError

    raise UserError(f"configure_agent() takes an Agent or an engine's wrapper of one, not {type(agent).__name__}")


def include_content_for(agent: AgentSpec | SupportsSpec | None) -> bool:
    if agent is not None and _settings.per_agent:
        value = _settings.per_agent.get(agent.source if isinstance(agent, AgentSpec) else agent)
        if value is not None:
            return value
    return _settings.include_content


def tracer() -> trace.Tracer:
    t = _settings.tracer
    if t is None:
        from .. import __version__

        # Without a provider this is the global proxy tracer: it starts reporting once an SDK is configured.
        t = _settings.tracer = trace.get_tracer("perdure", __version__, _settings.tracer_provider)
    return t


def instruments() -> Instruments:
    i = _settings.instruments
    if i is None:
        from .. import __version__

        meter = metrics.get_meter("perdure", __version__, _settings.meter_provider)
        i = _settings.instruments = Instruments(
            runs=meter.create_counter(
                A.METRIC_RUNS, unit="{run}", description="Runs started, and runs that ended, by status"
            ),
            attempts=meter.create_counter(
                A.METRIC_ATTEMPTS,
                unit="{attempt}",
                description="Run attempts (a run resumed after a crash has several)",
            ),
            step_duration=meter.create_histogram(
                A.METRIC_STEP_DURATION,
                unit="s",
                description="Duration of executed steps (replayed steps are not executed), by kind",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            ),
            model_retries=meter.create_counter(
                A.METRIC_MODEL_RETRIES, unit="{retry}", description="Retries of transient model errors"
            ),
            approvals_waiting=meter.create_up_down_counter(
                A.METRIC_APPROVALS_WAITING, unit="{call}", description="Tool calls waiting for a human decision"
            ),
            token_usage=meter.create_histogram(
                A.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Tokens used per model request",
                explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
            ),
        )
    return i
