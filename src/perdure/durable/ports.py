"""The ports an engine implements. Everything else about durable runs is written once, in ``perdure.durable``.

Three small interfaces, one per side of a run:

``Backend``  (the caller's side)  accept a run, execute or resume it to its end, wait for it, recover orphans.
``StepStore`` (inside one attempt) run-or-replay one step, a batch of steps, wait for decisions, cancellation.
``RunAdmin`` (no agent needed)    get, list, stuck, pending decisions, decide, cancel, prune.

``DurableAgentBase`` (``base.py``) implements every public method of a durable agent over a ``Backend``;
``StepRunner`` (``runner.py``) drives the agent loop over a ``StepStore``, with every replay check, the
at-most-once rule and the end-of-attempt classification. An engine decides only *how* a step is executed and
recorded: a journal row, a DBOS step, a Temporal activity, a cached Prefect task.

The DESIGN sketch put all of this on one ``Backend``; it is split in three because the sides live in different
places on some engines: on Temporal the step side runs inside workflow code on a worker while the caller's side
is a client in another process, and the admin side must work from the CLI with no agent at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .._exceptions import RunInProgress
from .._ops import Decision, Step

if TYPE_CHECKING:
    from .._loop import AgentRunResult, RunInput
    from ..runs import PendingDecision, RunInfo

__all__ = [
    "Backend",
    "ClaimLost",
    "Done",
    "Record",
    "RunAdmin",
    "RunMeta",
    "StepCall",
    "StepStore",
    "Suspend",
    "WaitCall",
]


@dataclass(frozen=True)
class StepCall:
    """One step to run or replay: its key (``turn/3/tool/<id>``), kind and description (the replay check)."""

    run_id: str
    key: str
    kind: str
    describe: str
    attempt: int
    at_most_once: bool = False
    """Write a durable "started" mark before the body acts; on replay a mark without a result is ``started``."""
    step: Step | None = field(default=None, compare=False, repr=False)
    """The step itself, for stores that execute it elsewhere instead of calling the body (a Temporal activity
    ships the step's messages or arguments to a worker)."""


@dataclass(frozen=True)
class WaitCall:
    """A step waiting for a human decision (an approval, or an unknown outcome to settle)."""

    run_id: str
    key: str
    describe: str
    attempt: int
    tool_name: str
    tool_call_id: str
    args: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class Done:
    """What a step's body produced, ready to record: the result as JSON text, and its token counts."""

    result: str
    input_tokens: int = 0
    output_tokens: int = 0
    value: Any = field(default=None, compare=False, repr=False)
    """The result itself (the object ``result`` encodes), so the attempt that produced it need not decode it."""


@dataclass(frozen=True)
class Record:
    """A step as its engine recorded it. ``status`` is ``done``, ``started`` (an at-most-once call that was
    interrupted: never run again), ``waiting`` (a decision is due) or ``failed`` (a model request that failed:
    shown by ``runs show``, and asked again by a later attempt)."""

    key: str
    kind: str
    describe: str
    status: Literal["done", "started", "waiting", "failed"]
    result: str | None = None
    attempt: int = 0
    value: Any = field(default=None, compare=False, repr=False)
    """The decoded result when the store has it at hand (a step just executed in this process)."""


Body = Callable[[], Awaitable[Done]]


class Suspend(Exception):
    """Raised by ``StepStore.wait``: the run stops here and holds no process until a decision arrives."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        super().__init__(", ".join(keys))
        self.keys = list(keys)


class ClaimLost(RunInProgress):
    """This process lost its claim of the run (it stalled past its lease; another worker took the run over).

    It stops executing the run at once and writes nothing more: the new owner's attempt is the run's.
    """


@runtime_checkable
class StepStore(Protocol):
    """Where one attempt of one run records its steps.

    ``recorded`` lists what earlier attempts recorded, for engines that can list it up front (the embedded journal,
    the memory store): the runner then checks each replayed step and that the loop did not leave a recorded path.
    Engines that replay natively (a Temporal history, DBOS steps by position) return an empty mapping and hand back
    recorded steps from ``step``; the runner checks the description of each.
    """

    @property
    def recorded(self) -> Mapping[str, Record]: ...

    async def step(self, call: StepCall, body: Body, *, interrupted: Body | None = None) -> Record:
        """Run ``body`` and record its result, or return the step's record if it has one.

        With ``call.at_most_once`` a durable mark precedes the body; if an earlier attempt left only that mark,
        ``interrupted`` (the "outcome unknown" result) is recorded instead of running the body again.
        """
        ...

    async def step_batch(self, calls: Sequence[StepCall], bodies: Sequence[Body]) -> list[Record]:
        """Steps that run concurrently (parallel tool calls), handed over as one batch: no ordering tricks."""
        ...

    async def wait(self, calls: Sequence[WaitCall]) -> Mapping[str, Decision]:
        """Decisions for these calls (by key): returned when the engine can hold the run, or ``Suspend`` raised."""
        ...

    def cancel_requested(self) -> bool: ...


@dataclass(frozen=True)
class RunMeta:
    """What an engine stores with a run at acceptance besides its input."""

    agent: str
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)

    def trace_context(self, run_id: str, engine: str) -> dict[str, str] | None:
        """The run's W3C trace context, to record with it: call only when the run is created (it reports the
        ``accept_run`` span), so that every attempt of the run, in any process, continues one trace."""
        from ..observability._spans import accept_trace_context

        return accept_trace_context(agent_name=self.agent, run_id=run_id, engine=engine) or None


@runtime_checkable
class RunAdmin(Protocol):
    """Operations on runs that need no agent: what the CLI and the web view use, on every engine."""

    engine: str

    async def get_run(self, run_id: str) -> RunInfo | None: ...

    async def list_runs(
        self, *, agent: str | None = None, status: Sequence[str] | None = None, limit: int | None = 100
    ) -> list[RunInfo]: ...

    async def stuck(self, older_than: float) -> list[RunInfo]:
        """Running runs whose lease expired, or that made no progress for ``older_than`` seconds."""
        ...

    async def pending(self, run_id: str) -> list[PendingDecision]: ...

    async def decide(self, run_id: str, tool_call_id: str, *, approved: bool, note: str | None = None) -> None: ...

    async def cancel(self, run_id: str) -> None: ...

    async def prune(self, older_than: float) -> int:
        """Delete finished runs older than ``older_than`` seconds; how many were deleted."""
        ...


@runtime_checkable
class Backend(Protocol):
    """The caller's side of an engine: what ``DurableAgentBase`` needs to implement every public method."""

    engine: str

    @property
    def admin(self) -> RunAdmin: ...

    async def accept(self, run: RunInput, meta: RunMeta, *, start: bool) -> bool:
        """Record the run durably (accepted = durable). True if created now, False if the id was known.

        ``start=False`` (``start()``): the run is left pending for a worker instead of executed by the caller.
        """
        ...

    async def resume(self, run_id: str, deps: Any, *, fresh: bool) -> AgentRunResult[Any]:
        """Execute (or continue) the run to its end here or on the engine, and return its result.

        A finished run returns its recorded result (nothing executes); a failed one raises its recorded error;
        a waiting one raises ``RunWaiting``; one executing in a live process raises ``RunInProgress``.
        """
        ...

    async def wait(self, run_id: str, deps: Any, timeout: float | None) -> AgentRunResult[Any]:
        """Wait until the run (executed anywhere) finishes; its result, or its error raised."""
        ...

    async def recover(self, deps: Any) -> list[str]:
        """Resume this agent's orphaned runs (their process died); their ids."""
        ...
