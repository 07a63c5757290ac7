"""The records every engine returns about runs: ``RunInfo``, ``StepInfo``, ``PendingDecision``, ``RunStatus``.

They live in the core so that importing them (or ``perdure``, or any adapter) loads no engine: the embedded journal,
DBOS, Temporal and Prefect describe their runs with the same classes, and the CLI renders them without knowing which
engine answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .usage import Usage

__all__ = ["FINAL_STATUSES", "PendingDecision", "RunInfo", "RunStatus", "StepInfo"]

RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "cancelled"]
"""``pending → running ⇄ waiting → completed | failed | cancelled``."""

FINAL_STATUSES: tuple[str, ...] = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class StepInfo:
    """One recorded step: when it ran, in which attempt, and what it cost."""

    key: str
    kind: str
    status: str
    attempt: int
    started_at: float
    finished_at: float | None
    input_tokens: int
    output_tokens: int
    describe: str
    result: Any = None
    """What the step recorded, as JSON data (a model response, a tool outcome, a decision), when the engine's
    admin reads it (the embedded journal does): ``runs show`` renders decisions, failures and ``--messages`` from
    it."""

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def replayed_in(self, attempts: int) -> list[int]:
        """The later attempts that replayed this step instead of executing it."""
        return list(range(self.attempt + 1, attempts + 1)) if self.status == "done" else []


@dataclass(frozen=True)
class PendingDecision:
    """A call waiting for a human: an approval, or an at-most-once call whose outcome is unknown."""

    run_id: str
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    reason: str
    key: str
    since: float


@dataclass(frozen=True)
class RunInfo:
    """A run as its engine knows it: status, steps, usage, output or error, pending decisions."""

    run_id: str
    agent: str
    status: str
    prompt: str | None
    attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    owner: str | None
    lease_expires: float | None
    fingerprint: str
    usage: Usage
    output: Any = None
    error: dict[str, Any] | None = None
    steps: list[StepInfo] = field(default_factory=list)
    pending: list[PendingDecision] = field(default_factory=list)
    trace_context: dict[str, str] | None = None
    cancel_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("steps", "pending", "usage")}
        data["usage"] = {**self.usage.__dict__, "total_tokens": self.usage.total_tokens}
        data["steps"] = [{**s.__dict__, "duration": s.duration} for s in self.steps]
        data["pending"] = [p.__dict__ for p in self.pending]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        """The inverse of ``to_json`` (for runs described by another process or engine)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        usage = {k: v for k, v in (data.get("usage") or {}).items() if k in Usage.__dataclass_fields__}
        fields["usage"] = Usage(**usage)
        fields["steps"] = [
            StepInfo(**{k: v for k, v in s.items() if k in StepInfo.__dataclass_fields__})
            for s in data.get("steps") or []
        ]
        fields["pending"] = [PendingDecision(**p) for p in data.get("pending") or []]
        return cls(**fields)
