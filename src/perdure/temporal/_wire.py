"""What crosses Temporal: workflow and activity payloads as plain JSON dicts, validated by pydantic.

Payloads are JSON built here, so they work with any data converter. Their field names are compatibility data
(recorded in workflow histories; the replay test in tests/temporal pins them).

History stays bounded: a model-request activity carries only the messages that are new since the run's previous
model request, with the count and a digest of the prefix; the worker keeps the conversation, and fetches it from
the workflow with a query (queries are not recorded) when it does not have it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .._agent import Agent
from .._exceptions import UserError
from .._ops import Decision
from .._tools import SideEffects, ToolOutcome
from ..messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, UserContent
from ..models import ModelRequestParameters, ModelSettings
from ..usage import Usage, UsageLimits

_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)
_PARAMS: pydantic.TypeAdapter[ModelRequestParameters] = pydantic.TypeAdapter(ModelRequestParameters)

EMPTY_DIGEST = hashlib.sha256(b"perdure").hexdigest()


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer sender may add fields; old workers ignore them

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ModelCall(_Wire):
    """Input of the model-request activity."""

    run_id: str
    key: str
    turn: int
    describe: str
    model: str | None = None
    """The run's model string, if it overrides the agent's model."""
    settings: ModelSettings | None = None
    prefix_count: int = 0
    prefix_digest: str = EMPTY_DIGEST
    digest: str = EMPTY_DIGEST
    """Digest of the whole conversation of this request: the prefix plus ``new_messages``."""
    new_messages: list[ModelMessage] = Field(default_factory=list)
    params: ModelRequestParameters | None = None
    """Sent with a run's first request; later ones name them by ``params_digest``."""
    params_digest: str = ""
    attempt: int = 1
    """The run attempt that scheduled this step (telemetry: ``perdure.attempt`` of its span; echoed back)."""
    trace_context: dict[str, str] | None = None
    """The W3C carrier of that attempt's ``invoke_agent`` span: the step's span is its child."""


class ModelCallResult(_Wire):
    key: str
    describe: str
    response: ModelResponse
    attempt: int = 1
    """The call's ``attempt``, echoed: a worker that replays the history learns how many attempts came before."""


class ToolCall(_Wire):
    """Input of the tool-call activity."""

    run_id: str
    key: str
    turn: int
    describe: str
    tool_name: str
    args: dict[str, Any]
    tool_call_id: str
    side_effects: SideEffects = "at_least_once"
    idempotency_key: str
    retry: int = 0
    prompt: str | None = None
    deps: Any = None
    attempt: int = 1
    """The run attempt that scheduled this step (telemetry: ``perdure.attempt`` of its span; echoed back)."""
    trace_context: dict[str, str] | None = None
    """The W3C carrier of that attempt's ``invoke_agent`` span: the step's span is its child."""
    usage: dict[str, int] | None = None
    """The run's usage when the model asked for this call (the tool's ``ctx.usage``): its non-zero counters, to
    keep the history small."""
    model_name: str = ""
    """The run's model name: the tool's ``ctx.model_name``."""

    def dump(self) -> dict[str, Any]:
        # Fields at their defaults are left out (a reader fills them in): history stays small.
        return self.model_dump(mode="json", exclude_defaults=True)


class ToolCallResult(_Wire):
    key: str
    describe: str
    outcome: ToolOutcome
    attempt: int = 1
    """The call's ``attempt``, echoed: a worker that replays the history learns how many attempts came before."""


class Conversation(_Wire):
    """Answer of the ``perdure.model_request`` query: everything a model request sends."""

    messages: list[ModelMessage]
    params: ModelRequestParameters


class JournalEntry(_Wire):
    """A step result carried into a continued-as-new workflow run, replayed there by key."""

    key: str
    kind: Literal["model", "tool", "wait"]
    describe: str
    result: dict[str, Any]


class StepRecord(_Wire):
    key: str
    kind: str
    status: str
    describe: str
    started_at: float
    finished_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    workflow_run: int = 1
    replayed: bool = False


class PendingRecord(_Wire):
    run_id: str
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    reason: str
    key: str
    since: float


class WorkflowInput(_Wire):
    """Input of the built-in agent workflow (and of each run it continues as new into)."""

    agent: str
    run_id: str
    prompt: str | None = None
    content: list[UserContent] | None = None
    """A prompt made of parts (text and files), when it has files."""
    message_history: list[ModelMessage] = Field(default_factory=list)
    usage_limits: UsageLimits | None = None
    model_settings: ModelSettings | None = None
    model: str | None = None
    deps: Any = None
    fingerprint: str = ""
    journal: list[JournalEntry] = Field(default_factory=list)
    decisions: dict[str, Decision] = Field(default_factory=dict)
    steps: list[StepRecord] = Field(default_factory=list)
    workflow_run: int = 1
    """1 for the first workflow run of this agent run, +1 for each continue-as-new."""
    trace_context: dict[str, str] | None = None
    """The run's trace, recorded when the run was accepted (W3C carrier)."""
    attempts: int = 0
    """Telemetry: how many attempts earlier workflow runs of this agent run made."""


class RunOutput(_Wire):
    """Output of the built-in agent workflow: what ``AgentRunResult`` is rebuilt from."""

    output: Any = None
    output_type: str | None = None
    messages: list[ModelMessage] = Field(default_factory=list)
    new_from: int = 0
    usage: Usage = Field(default_factory=Usage)


class Approval(_Wire):
    """Argument of the ``perdure.approve`` update."""

    run_id: str
    tool_call_id: str
    approved: bool = True
    note: str | None = None


# --- queries ----------------------------------------------------------------------------------------------

# A query goes to the worker that last ran the workflow (its sticky queue). If that worker died, the server falls
# back to the task queue after the sticky schedule-to-start timeout (10 s by default); a query that reaches a
# worker just as the workflow closes can also go unanswered. Ask again with growing deadlines: a live worker
# answers in milliseconds.
QUERY_DEADLINES = (1.0, 2.0, 5.0, 10.0, 20.0)


async def query(handle: Any, name: str, arg: dict[str, Any], deadlines: tuple[float, ...] = QUERY_DEADLINES) -> Any:
    """``handle.query(name, arg)``, asked again when a deadline passes."""
    from datetime import timedelta

    from temporalio.service import RPCError, RPCStatusCode

    timed_out = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)  # client deadlines are CANCELLED
    for i, seconds in enumerate(deadlines):
        try:
            return await handle.query(name, arg, rpc_timeout=timedelta(seconds=seconds))
        except RPCError as e:
            if e.status not in timed_out or i == len(deadlines) - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# --- digests ----------------------------------------------------------------------------------------------


def extend_digest(prefix: str, messages: list[ModelMessage]) -> str:
    """A rolling digest: the prefix's digest extended with ``messages`` (computed in the workflow only)."""
    h = hashlib.sha256(prefix.encode())
    h.update(ModelMessagesTypeAdapter.dump_json(messages))
    return h.hexdigest()


def params_digest(params: ModelRequestParameters) -> str:
    return hashlib.sha256(_PARAMS.dump_json(params)).hexdigest()[:32]


# --- deps and output --------------------------------------------------------------------------------------

_JSON_NATIVE = (dict, list, str, int, float, bool)


def _declared_deps_type(agent: Agent[Any, Any]) -> Any:
    tp = agent.deps_type
    return None if tp is type(None) or tp is Any else tp


def encode_deps(agent: Agent[Any, Any], deps: Any) -> Any:
    """``deps`` as JSON, checked to come back as the same type in a worker: otherwise a ``UserError`` now."""
    if deps is None:
        return None
    declared = _declared_deps_type(agent)
    if declared is None and not isinstance(deps, _JSON_NATIVE):
        raise UserError(
            f"deps of type {type(deps).__name__} must be rebuilt in Temporal workers from JSON, and the agent "
            f"{agent.name!r} does not declare their type: pass Agent(..., deps_type={type(deps).__name__})"
        )
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(declared or type(deps))
        data = adapter.dump_python(deps, mode="json")
        json.dumps(data)
        adapter.validate_python(data)
    except Exception as e:
        raise UserError(
            f"deps of type {type(deps).__name__} cannot cross into Temporal activities: they must be "
            "pydantic-serializable (a pydantic model, a dataclass or JSON values), because tools run in worker "
            "processes that rebuild them from JSON. Keep connections and clients out of deps: create them in "
            f"the worker (e.g. a module-level client) instead. ({type(e).__name__}: {e})"
        ) from e
    return data


def usage_counters(usage: Usage | None) -> dict[str, int] | None:
    return None if usage is None else {k: v for k, v in usage.__dict__.items() if v}


def decode_deps(agent: Agent[Any, Any], data: Any) -> Any:
    if data is None:
        return None
    declared = _declared_deps_type(agent)
    if declared is None:
        return data
    return pydantic.TypeAdapter(declared).validate_python(data)


def encode_output(output: Any) -> tuple[Any, str | None]:
    """The run's output as JSON, and its type's qualified name (to rebuild it as that type at the caller)."""
    kind = None if isinstance(output, str) else f"{type(output).__module__}.{type(output).__qualname__}"
    return _ANY.dump_python(output, mode="json"), kind


def decode_output(adapter: pydantic.TypeAdapter[Any], value: Any) -> Any:
    """The recorded output as the agent's output type; as recorded if it no longer validates (a changed type)."""
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError:
        return value
