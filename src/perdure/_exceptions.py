"""perdure's exceptions.

The hierarchy::

    PerdureError                      root of everything perdure raises on purpose
    ├── UserError                     the developer misused perdure: fix the code or configuration
    │   └── MissingExtra (ImportError) an optional extra is not installed: the message has the pip command
    ├── AgentRunError                 a run failed; the run keeps its journal and this error
    │   ├── UnexpectedModelBehavior   the model kept producing invalid output past the retry budget
    │   ├── UsageLimitExceeded        a UsageLimits bound was hit
    │   ├── ModelHTTPError            the provider answered with an error (``transient``: would a retry help)
    │   ├── ToolError                 a tool raised; the run failed at that step
    │   ├── ApprovalRequired          a tool needs a human decision and the engine cannot wait (plain runs)
    │   ├── RunCancelled              the run was cancelled
    │   └── NonDeterminismError       replay no longer matches the recorded steps
    ├── RunInProgress                 the run is executing in a live process right now
    └── RunWaiting                    the run is suspended, waiting for a human decision (not a failure)

``ModelRetry`` is not an error of perdure's: tools and output validators raise it to send a message back to
the model and ask it to try again.

Every ``PerdureError`` crosses process boundaries with all its fields, two ways: as a JSON record
(``to_record``, rebuilt by ``error_from_record``), which journals and workflow histories store, and with
``pickle``. Each class registers itself under its ``record_name`` when it is defined, so the registry cannot
forget one.
"""

from __future__ import annotations

import copyreg
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import unquote

__all__ = [
    "AgentRunError",
    "ApprovalRequired",
    "MissingExtra",
    "ModelHTTPError",
    "ModelRetry",
    "NonDeterminismError",
    "PerdureError",
    "RunCancelled",
    "RunInProgress",
    "RunWaiting",
    "ToolError",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
]


class ModelRetry(Exception):  # no Error suffix: the name users know from other agent frameworks
    """Raise in a tool or output validator to send ``message`` back to the model and ask it to retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PerdureError(Exception):
    """Root of every error perdure raises on purpose.

    A subclass with fields of its own extends ``to_record`` (listing them) and ``from_record`` (reading them,
    with defaults for records written before a field existed). Its ``record_name`` is stored in journals and
    histories: a class renamed in Python keeps its old ``record_name``.
    """

    record_name: ClassVar[str] = "PerdureError"
    """The ``type`` of this class's records (the class name unless set in the class body); never change it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*self.args) on load: that fails for every constructor whose parameters
        # are not (message), and re-words messages. Rebuild like any other object instead: a bare instance
        # (args set, __init__ not called), then its attributes.
        return (_NEWOBJ, (type(self), *self.args), dict(self.__dict__))

    def to_record(self) -> dict[str, Any]:
        """A JSON-able description, so the error can cross a process boundary (journal, activity, history).

        ``{"type": record_name, "message": ..., <the class's fields>}``; ``error_from_record`` rebuilds it.
        """
        record: dict[str, Any] = {"type": self.record_name, "message": self.message}
        notes = getattr(self, "__notes__", None)  # add_note(): context a caller attached
        if isinstance(notes, list) and notes:
            record["notes"] = [str(n) for n in notes]
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """This class's error, from its record (this release's ``to_record`` shape, or an older release's)."""
        return cls._rebuilt(record)

    @classmethod
    def _rebuilt(cls, record: Mapping[str, Any], **fields: Any) -> Self:
        """An instance holding the recorded message, notes and ``fields``, made without calling the constructor.

        Constructors word their own message (the record keeps the words the user saw, maybe written by an older
        release), and a subclass's constructor may take parameters this class cannot know.
        """
        recorded = record.get("message")
        message = "" if recorded is None else str(recorded)
        error = cls.__new__(cls, message)
        PerdureError.__init__(error, message)
        for name, value in fields.items():
            setattr(error, name, value)
        notes = record.get("notes")
        for note in notes if isinstance(notes, list) else []:
            error.add_note(str(note))
        return error


_NEWOBJ: Callable[..., Any] = getattr(copyreg, "__newobj__")  # noqa: B009 (not in typeshed); pickle's NEWOBJ opcode
_REGISTRY: dict[str, type[PerdureError]] = {PerdureError.record_name: PerdureError}


def _register(cls: type[PerdureError]) -> None:
    name = cls.__dict__.get("record_name")
    if name is None:
        name = cls.record_name = cls.__name__
    if not isinstance(name, str) or not name:
        raise UserError(f"{cls.__module__}.{cls.__qualname__}.record_name must be a non-empty string, not {name!r}")
    taken = _REGISTRY.get(name)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise UserError(
            f"the error record name {name!r} of {cls.__module__}.{cls.__qualname__} is already used by "
            f"{taken.__module__}.{taken.__qualname__}: set another `record_name = ...` in the class body of one of them"
        )
    _REGISTRY[name] = cls  # the same class defined again (its module reloaded) replaces itself


class UserError(PerdureError):
    """The developer misused perdure; the message says what is wrong and how to fix it."""


class MissingExtra(UserError, ImportError):
    """An optional dependency is missing; the message holds the exact install command."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module!r} is not installed; it comes with perdure's {extra!r} extra: {install_command(extra)}"
        )
        self.extra = extra
        self.name = module

    def __reduce__(self) -> tuple[Any, ...]:
        new, args, state = super().__reduce__()
        # ImportError keeps name, path and msg in slots of its own, outside __dict__.
        return (new, args, {**state, "name": self.name, "path": self.path, "msg": self.msg})

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "extra": self.extra, "module": self.name}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, extra=_str(record, "extra") or "", name=_str(record, "module"))


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to this perdure, installed from where this one was installed from.

    perdure is not on a package index: it is installed from a checkout or a built wheel
    (``pip install "perdure[openai] @ file:///path/to/perdure"``), and pip records that source in the
    distribution's ``direct_url.json`` (PEP 610). ``pip install "perdure[extra]"`` alone would fail.
    """
    requirement = f'"perdure[{extra}]"'
    try:
        import importlib.metadata  # only when an extra is missing: it costs more than the rest of `import perdure`

        source = json.loads(importlib.metadata.distribution("perdure").read_text("direct_url.json") or "null")
    except Exception:  # not installed as a distribution, or a record pip did not write: the plain form
        source = None
    if not isinstance(source, dict) or not isinstance(source.get("url"), str):
        return f"pip install {requirement}"
    url: str = source["url"]
    if isinstance(source.get("dir_info"), dict) and source["dir_info"].get("editable"):
        return f'pip install -e "{unquote(url.removeprefix("file://"))}[{extra}]"'
    vcs = source.get("vcs_info")
    if isinstance(vcs, dict):
        revision = vcs.get("requested_revision") or vcs.get("commit_id")
        url = f"{vcs.get('vcs', 'git')}+{url}" + (f"@{revision}" if revision else "")
    return f'pip install "perdure[{extra}] @ {url}"'


class AgentRunError(PerdureError):
    """A run failed. Durable engines keep the run's journal and record this error."""


class UnexpectedModelBehavior(AgentRunError):
    """The model kept answering with something invalid past the retry budget."""

    def __init__(self, message: str, body: str | None = None) -> None:
        super().__init__(message)
        self.body = body

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "body": self.body}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, body=_str(record, "body"))


class UsageLimitExceeded(AgentRunError):
    """A bound set with ``UsageLimits`` was reached."""


class ModelHTTPError(AgentRunError):
    """The model provider answered with an error.

    ``transient`` is True for timeouts, 429 and 5xx (retried with backoff, bounded), False for errors that
    retrying cannot fix (400, 401, 403, 404): those fail the run at once.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        model_name: str | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.model_name = model_name
        self.transient = transient
        self.retry_after = retry_after

    def to_record(self) -> dict[str, Any]:
        fields = {"status_code": self.status_code, "model_name": self.model_name, "transient": self.transient}
        return {**super().to_record(), **fields, "retry_after": self.retry_after}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        status_code = record.get("status_code")
        return cls._rebuilt(
            record,
            status_code=status_code if isinstance(status_code, int) and not isinstance(status_code, bool) else None,
            model_name=_str(record, "model_name"),
            transient=record.get("transient") is True,
            retry_after=_float(record, "retry_after"),
        )


class ToolError(AgentRunError):
    """A tool raised an exception (other than ``ModelRetry``); the run failed at that step.

    Where the tool ran, its exception is this error's ``__cause__``. ``traceback`` is that exception's formatted
    traceback, as text: unlike ``__cause__`` it survives the journal, a workflow history and pickle, so a run
    read back later can still show the line of the tool that failed.
    """

    def __init__(self, message: str, *, tool_name: str, error_type: str, traceback: str | None = None) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.error_type = error_type
        self.traceback = traceback

    def to_record(self) -> dict[str, Any]:
        fields = {"tool_name": self.tool_name, "error_type": self.error_type, "traceback": self.traceback}
        return {**super().to_record(), **fields}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(
            record,
            tool_name=_str(record, "tool_name") or "",
            error_type=_str(record, "error_type") or "",
            traceback=_str(record, "traceback"),
        )


class ApprovalRequired(AgentRunError):
    """A tool declared ``requires_approval=True`` was called in a run whose engine cannot wait for a human.

    Plain ``agent.run()`` raises this; durable engines suspend the run instead (status ``waiting``).
    """

    def __init__(self, message: str, *, pending: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.pending = pending

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "pending": [dict(p) for p in self.pending]}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, pending=_dicts(record, "pending"))


class RunCancelled(AgentRunError):
    """The run was cancelled; it stopped at a step boundary."""


class NonDeterminismError(AgentRunError):
    """On replay the agent asked for a step that does not match what the run recorded.

    The agent's code changed in a way that changes the path of runs already in flight. perdure never
    silently re-executes on a mismatch: finish those runs with the old code, or start them again.

    ``step_key``, ``recorded`` and ``requested`` name the mismatch; they (and ``run_id``) are empty strings when
    the error was rebuilt from a record that only holds the message (older releases, or an engine that only had
    a message).
    """

    def __init__(self, *, run_id: str, step_key: str, recorded: str, requested: str) -> None:
        super().__init__(
            f"run {run_id!r} no longer replays: at step {step_key!r} the journal recorded {recorded}, "
            f"but the agent now asks for {requested}. The agent's code changed in a way that changes the "
            "path of this run; finish it with the code that started it, or start it again under a new run id."
        )
        self.run_id = run_id
        self.step_key = step_key
        self.recorded = recorded
        self.requested = requested

    def to_record(self) -> dict[str, Any]:
        fields = {"run_id": self.run_id, "step_key": self.step_key}
        return {**super().to_record(), **fields, "recorded": self.recorded, "requested": self.requested}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        # Records of older releases (and engines that only know the message) carry no fields: empty strings.
        fields = {name: _str(record, name) or "" for name in ("run_id", "step_key", "recorded", "requested")}
        return cls._rebuilt(record, **fields)


class RunInProgress(PerdureError):
    """The run is being executed by a live process right now; it is never executed twice at once."""

    def __init__(self, run_id: str, owner: str | None = None) -> None:
        where = f" by {owner}" if owner else ""
        super().__init__(
            f"run {run_id!r} is being executed{where} right now; wait for it (durable.wait(run_id)) "
            "instead of starting it again"
        )
        self.run_id = run_id
        self.owner = owner

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "run_id": self.run_id, "owner": self.owner}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, run_id=_str(record, "run_id") or "", owner=_str(record, "owner"))


class RunWaiting(PerdureError):
    """The run is suspended until a human decides on ``pending`` (no process is held while it waits).

    Decide with ``approve(run_id, tool_call_id, approved=..., note=...)`` from any process (or
    ``perdure approve``); then ``resume(run_id)`` or a worker continues the run.
    """

    def __init__(self, run_id: str, pending: list[dict[str, Any]]) -> None:
        calls = ", ".join(f"{p['tool_name']}({p['tool_call_id']})" for p in pending) or "nothing"
        super().__init__(f"run {run_id!r} is waiting for a decision on: {calls}")
        self.run_id = run_id
        self.pending = pending

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "run_id": self.run_id, "pending": [dict(p) for p in self.pending]}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, run_id=_str(record, "run_id") or "", pending=_dicts(record, "pending"))


def error_from_record(record: Mapping[str, Any]) -> PerdureError:
    """Rebuild an error recorded by ``to_record`` (in another process, maybe days ago, maybe by an older release).

    The record's ``type`` picks the class (its ``record_name``). A type no class registers (a foreign exception
    an engine recorded, or an error of a newer release) comes back as an ``AgentRunError`` with the message.
    """
    kind = record.get("type", AgentRunError.record_name)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    return (cls or AgentRunError).from_record(record)


def _str(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def _float(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dicts(record: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = record.get(key)
    return [dict(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []
