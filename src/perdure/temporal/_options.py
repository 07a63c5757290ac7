"""Activity options: timeouts, heartbeats and retries, per agent, per model and per tool, with bounded defaults;
and ``AgentConfig``, what the workflow and activity code of one agent need to know about it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.common import RetryPolicy

from .._exceptions import UserError
from ..models import Model, RetryConfig
from ._names import model_activity_name, tool_activity_name, workflow_name

if TYPE_CHECKING:
    from .._agent import Agent

__all__ = ["ActivityOptions", "AgentConfig"]

DEFAULT_START_TO_CLOSE = timedelta(minutes=5)
DEFAULT_HEARTBEAT = timedelta(seconds=10)
DEFAULT_TOOL_ATTEMPTS = 3
# Tool exceptions are recorded outcomes, never retried: Temporal retries a tool activity only when the attempt was
# lost (its worker died or stalled past the heartbeat timeout, shut down mid-call, or start-to-close ran out). That
# wait is already behind us, so the retry goes out at once rather than after Temporal's usual 1 s (which made a
# killed worker's tool run again after heartbeat timeout + 1 s, measured by `bench/bench_temporal.py recovery`).
DEFAULT_TOOL_FIRST_RETRY = timedelta(milliseconds=100)


@dataclass(frozen=True, kw_only=True)
class ActivityOptions:
    """How Temporal runs one kind of step as an activity; ``None`` fields inherit from the broader level.

    Levels, broadest first: perdure's defaults, ``TemporalAgent(activity_options=...)`` (every activity of the
    agent), ``model_activity_options=`` (model requests; a mapping applies by model name) and
    ``tool_activity_options={"tool name": ...}``::

        TemporalAgent(
            agent,
            activity_options=ActivityOptions(start_to_close_timeout=timedelta(minutes=2)),
            tool_activity_options={"charge_card": ActivityOptions(retry_policy=RetryPolicy(maximum_attempts=1))},
        )

    Defaults: ``start_to_close_timeout`` 5 minutes, ``heartbeat_timeout`` 10 s (activities heartbeat in the
    background while they run, so a worker that dies mid-step is noticed after the heartbeat timeout, not the
    start-to-close timeout), retries bounded: model requests follow the agent's ``RetryConfig`` (attempts,
    backoff), tools get 3 attempts, the first retry 0.1 s after the lost attempt (a tool's own exceptions are
    recorded, never retried: a retry means its worker died, stalled, shut down or timed out). Retrying forever
    (``maximum_attempts=0``) is refused unless ``schedule_to_close_timeout`` bounds it.
    """

    start_to_close_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    retry_policy: RetryPolicy | None = None
    task_queue: str | None = None
    """Run these activities on another task queue (e.g. tools on workers close to their systems)."""

    def merged(self, other: ActivityOptions | None) -> ActivityOptions:
        """These options with ``other``'s set fields on top."""
        if other is None:
            return self
        updates = {f.name: getattr(other, f.name) for f in dataclasses.fields(other)}
        return dataclasses.replace(self, **{k: v for k, v in updates.items() if v is not None})


def check_options(options: ActivityOptions, where: str) -> None:
    if not isinstance(options, ActivityOptions):
        raise UserError(f"{where} must be an ActivityOptions, not {type(options).__name__}")
    policy = options.retry_policy
    if policy is not None and policy.maximum_attempts == 0 and options.schedule_to_close_timeout is None:
        raise UserError(
            f"{where}: retry_policy.maximum_attempts=0 retries forever; set maximum_attempts, or bound the "
            "retries with schedule_to_close_timeout"
        )


def model_defaults(retry: RetryConfig) -> ActivityOptions:
    """Model requests retry transient errors as the agent's ``RetryConfig`` says, through Temporal."""
    return ActivityOptions(
        start_to_close_timeout=DEFAULT_START_TO_CLOSE,
        heartbeat_timeout=DEFAULT_HEARTBEAT,
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=retry.initial_delay),
            backoff_coefficient=retry.multiplier,
            maximum_interval=timedelta(seconds=retry.max_delay),
            maximum_attempts=retry.max_attempts,
        ),
    )


def tool_defaults() -> ActivityOptions:
    return ActivityOptions(
        start_to_close_timeout=DEFAULT_START_TO_CLOSE,
        heartbeat_timeout=DEFAULT_HEARTBEAT,
        retry_policy=RetryPolicy(
            initial_interval=DEFAULT_TOOL_FIRST_RETRY,
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=DEFAULT_TOOL_ATTEMPTS,
        ),
    )


def activity_kwargs(options: ActivityOptions) -> dict[str, Any]:
    """Keyword arguments for ``workflow.execute_activity``."""
    kw: dict[str, Any] = {
        "start_to_close_timeout": options.start_to_close_timeout,
        "schedule_to_close_timeout": options.schedule_to_close_timeout,
        "heartbeat_timeout": options.heartbeat_timeout,
        "retry_policy": options.retry_policy,
    }
    if options.task_queue is not None:
        kw["task_queue"] = options.task_queue
    return {k: v for k, v in kw.items() if v is not None}


def check_mapping(value: Mapping[str, ActivityOptions] | None, where: str) -> dict[str, ActivityOptions]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{where} must map names to ActivityOptions, not {type(value).__name__}")
    for name, options in value.items():
        check_options(options, f"{where}[{name!r}]")
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """One agent as its workflow and activities see it: names, options by level, continue-as-new settings.

    ``TemporalAgent`` builds it; workflow and activity code receive it (they never reach into the façade).
    """

    agent: Agent[Any, Any]
    name: str
    activity_options: ActivityOptions | None = None
    model_all: ActivityOptions | None = None
    model_by_name: Mapping[str, ActivityOptions] = dataclasses.field(default_factory=dict)
    tool_by_name: Mapping[str, ActivityOptions] = dataclasses.field(default_factory=dict)
    max_history_events: int | None = None
    fail_on_nondeterminism: bool = True

    @property
    def workflow_name(self) -> str:
        return workflow_name(self.name)

    @property
    def model_activity_name(self) -> str:
        return model_activity_name(self.name)

    @property
    def tool_activity_name(self) -> str:
        return tool_activity_name(self.name)

    def model_options(self, model: str | None) -> ActivityOptions:
        key = model if model is not None else (self.agent.model_name or "")
        options = model_defaults(self.agent.retry_config).merged(self.activity_options).merged(self.model_all)
        return options.merged(self.model_by_name.get(key))

    def tool_options(self, tool_name: str) -> ActivityOptions:
        return tool_defaults().merged(self.activity_options).merged(self.tool_by_name.get(tool_name))

    def model_name(self, model: str | None) -> str:
        """The model's name without constructing it (workflow code must not build provider clients)."""
        if model is None and isinstance(self.agent.model, Model):
            return self.agent.model.model_name
        spec = model if model is not None else self.agent.model
        if spec is None:
            raise UserError("no model: pass one to Agent(model=...) or to run(..., model=...)")
        provider, _, name = str(spec).partition(":")
        return name or provider
