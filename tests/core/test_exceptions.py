"""Errors: one hierarchy; every error survives pickle and its JSON record (a journal, a history, another
process) with every field; records written by the previous release still decode."""

import copy
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import pytest

import perdure
from perdure import (
    AgentRunError,
    ApprovalRequired,
    MissingExtra,
    ModelHTTPError,
    ModelRetry,
    NonDeterminismError,
    PerdureError,
    RunCancelled,
    RunInProgress,
    RunWaiting,
    ToolError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
    _exceptions,
)
from perdure._exceptions import (
    error_from_record,  # engines' helper; no public name yet
    install_command,
)

ROOT = Path(__file__).resolve().parents[2]


def test_hierarchy() -> None:
    for run_error in (
        UnexpectedModelBehavior,
        UsageLimitExceeded,
        ModelHTTPError,
        ToolError,
        ApprovalRequired,
        RunCancelled,
        NonDeterminismError,
    ):
        assert issubclass(run_error, AgentRunError)
    assert issubclass(AgentRunError, PerdureError)
    assert issubclass(UserError, PerdureError)
    assert issubclass(MissingExtra, UserError) and issubclass(MissingExtra, ImportError)
    assert issubclass(RunInProgress, PerdureError) and not issubclass(RunInProgress, AgentRunError)
    assert issubclass(RunWaiting, PerdureError) and not issubclass(RunWaiting, AgentRunError)
    assert not issubclass(ModelRetry, PerdureError)


def test_missing_extra_prints_the_install_command() -> None:
    error = MissingExtra("temporal", "temporalio")
    # The command installs the extra from where this perdure came from (a checkout here; a wheel in tests/install).
    assert str(error).endswith(f"extra: {install_command('temporal')}")
    assert install_command("temporal") in (
        f'pip install -e "{ROOT}[temporal]"',  # make install: an editable install of this checkout
        f'pip install "perdure[temporal] @ {ROOT.as_uri()}"',
    )
    assert error.name == "temporalio"


def _fields(error: BaseException) -> dict[str, Any]:
    """Everything an error holds: its attributes, args and message, and ImportError's own slots."""
    fields = {**vars(error), "args": error.args, "str": str(error)}
    if isinstance(error, ImportError):
        fields.update(name=error.name, path=error.path, msg=error.msg)
    return fields


def _exported_errors() -> set[type[BaseException]]:
    """Every exception class perdure exports, or defines in its errors module."""
    names = [getattr(perdure, name) for name in perdure.__all__] + list(vars(_exceptions).values())
    return {c for c in names if isinstance(c, type) and issubclass(c, BaseException) and c.__module__ != "builtins"}


PENDING = [
    {
        "run_id": "r1",
        "tool_call_id": "c1",
        "tool_name": "refund",
        "args": {"order_id": 42, "amount": 12.5},
        "reason": "approval",
        "key": "turn/1/tool/c1",
        "since": 1767225600.25,
    }
]
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/tools.py", line 12, in lookup_order\n'
    "    return orders[order_id]\n"
    "KeyError: 42\n"
)

# One error of every class, each field set to something other than its default (checked below). A new error
# class fails test_every_exported_error_has_a_sample until it gets one here.
SAMPLES: list[Exception] = [
    PerdureError("root"),
    UserError("misused"),
    MissingExtra("temporal", "temporalio"),
    AgentRunError("run 'r1' failed: ValueError: boom"),
    UnexpectedModelBehavior("bad output", body="raw body"),
    UsageLimitExceeded("request_limit of 3 exceeded"),
    ModelHTTPError("overloaded", status_code=529, model_name="claude", transient=True, retry_after=2.5),
    ToolError(
        "tool 'lookup_order' failed: KeyError: 42", tool_name="lookup_order", error_type="KeyError", traceback=TRACEBACK
    ),
    ApprovalRequired("refund needs approval", pending=PENDING),
    RunCancelled("run 'r1' was cancelled"),
    NonDeterminismError(run_id="r1", step_key="turn/2/model", recorded="a tool call", requested="a request"),
    RunInProgress("r1", owner="host-a:4242"),
    RunWaiting("r1", PENDING),
    ModelRetry("try again with an order id"),
]
RECORDED = [e for e in SAMPLES if isinstance(e, PerdureError)]


def test_every_exported_error_has_a_sample() -> None:
    assert {type(e) for e in SAMPLES} == _exported_errors()
    # ModelRetry is a signal from a tool to the model inside a run, never a run's outcome: it is never recorded,
    # so it only has to pickle. Every other error is a PerdureError, registered under its record name.
    assert {c for c in _exported_errors() if not issubclass(c, PerdureError)} == {ModelRetry}
    for error in RECORDED:
        assert _exceptions._REGISTRY[error.record_name] is type(error)


@pytest.mark.parametrize("error", RECORDED, ids=lambda e: type(e).__name__)
def test_the_samples_set_every_field(error: PerdureError) -> None:
    bare = type(error).from_record({"type": error.record_name, "message": error.message})
    assert bare.message == error.message
    differing = {k for k, v in _fields(error).items() if _fields(bare).get(k) != v}
    assert differing >= set(_fields(error)) - {"message", "args", "str", "msg", "path"}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_every_field(error: Exception) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(back) is type(error)
        assert _fields(back) == _fields(error)
    assert _fields(copy.deepcopy(error)) == _fields(error)


@pytest.mark.parametrize("error", RECORDED, ids=lambda e: type(e).__name__)
def test_every_error_survives_its_record_with_every_field(error: PerdureError) -> None:
    record = json.loads(json.dumps(error.to_record()))  # what a journal or a workflow history stores
    assert record["type"] == error.record_name
    rebuilt = error_from_record(record)
    assert type(rebuilt) is type(error)
    assert _fields(rebuilt) == _fields(error)
    assert rebuilt.to_record() == record
    assert _fields(type(error).from_record(record)) == _fields(error)


def test_notes_survive_pickle_and_the_record() -> None:
    error = ToolError("tool 'pay' failed: boom", tool_name="pay", error_type="RuntimeError")
    error.add_note("while refunding order 42")
    assert pickle.loads(pickle.dumps(error)).__notes__ == ["while refunding order 42"]
    assert error_from_record(error.to_record()).__notes__ == ["while refunding order 42"]


# What the previous release's to_record wrote, as journals and histories hold it: these must keep decoding.
PREVIOUS_RELEASE: list[tuple[dict[str, Any], type[PerdureError], dict[str, Any]]] = [
    ({"type": "AgentRunError", "message": "run 'r1' failed: ValueError: boom"}, AgentRunError, {}),
    ({"type": "UsageLimitExceeded", "message": "request_limit of 3 exceeded"}, UsageLimitExceeded, {}),
    ({"type": "RunCancelled", "message": "run 'r1' was cancelled"}, RunCancelled, {}),
    (
        {"type": "UnexpectedModelBehavior", "message": "bad output", "body": "raw body"},
        UnexpectedModelBehavior,
        {"body": "raw body"},
    ),
    (
        {
            "type": "ModelHTTPError",
            "message": "overloaded",
            "status_code": 529,
            "model_name": "claude",
            "transient": True,
        },
        ModelHTTPError,
        {"status_code": 529, "model_name": "claude", "transient": True, "retry_after": None},
    ),
    (
        {"type": "ToolError", "message": "tool 'pay' failed: boom", "tool_name": "pay", "error_type": "RuntimeError"},
        ToolError,
        {"tool_name": "pay", "error_type": "RuntimeError", "traceback": None},
    ),
    (
        {
            "type": "NonDeterminismError",
            "message": "run 'r1' no longer replays: at step 'turn/2/model' ...",
            "run_id": "r1",
            "step_key": "turn/2/model",
            "recorded": "a tool call",
            "requested": "a request",
        },
        NonDeterminismError,
        {"run_id": "r1", "step_key": "turn/2/model", "recorded": "a tool call", "requested": "a request"},
    ),
    (  # written before NonDeterminismError recorded its fields (and still by Temporal when it only has a message)
        {"type": "NonDeterminismError", "message": "run 'r1' no longer replays: activity id mismatch"},
        NonDeterminismError,
        {"run_id": "", "step_key": "", "recorded": "", "requested": ""},
    ),
    # These recorded only a message; the previous release decoded them as AgentRunError, now as their own class.
    ({"type": "ApprovalRequired", "message": "refund needs approval"}, ApprovalRequired, {"pending": []}),
    ({"type": "UserError", "message": "misused"}, UserError, {}),
    ({"type": "PerdureError", "message": "root"}, PerdureError, {}),
    ({"type": "RunInProgress", "message": "run 'r1' is busy"}, RunInProgress, {"run_id": "", "owner": None}),
    ({"type": "RunWaiting", "message": "run 'r1' is waiting"}, RunWaiting, {"run_id": "", "pending": []}),
    ({"type": "MissingExtra", "message": "'temporalio' is not installed"}, MissingExtra, {"extra": "", "name": None}),
]


@pytest.mark.parametrize(("record", "kind", "fields"), PREVIOUS_RELEASE, ids=lambda v: str(v)[:40])
def test_records_of_the_previous_release_still_decode(
    record: dict[str, Any], kind: type[PerdureError], fields: dict[str, Any]
) -> None:
    rebuilt = error_from_record(record)
    assert type(rebuilt) is kind
    assert str(rebuilt) == record["message"]
    assert {name: getattr(rebuilt, name) for name in fields} == fields


@pytest.mark.parametrize(
    "record",
    [
        {"type": "ValueError", "message": "ValueError: boom"},  # a foreign exception an engine recorded
        {"type": "SomethingNew", "message": "from a newer release", "field": 1},
        {"type": 3, "message": "a damaged record"},
        {"message": "no type"},
    ],
)
def test_unknown_record_types_become_agent_run_errors(record: dict[str, Any]) -> None:
    rebuilt = error_from_record(record)
    assert type(rebuilt) is AgentRunError
    assert str(rebuilt) == record["message"]


class PaymentDeclined(AgentRunError):
    """An application's own run error: a constructor of its own, a field, and a record name kept across renames."""

    record_name = "tests.PaymentDeclinedError"

    def __init__(self, order_id: int) -> None:
        super().__init__(f"payment for order {order_id} declined")
        self.order_id = order_id

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "order_id": self.order_id}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls._rebuilt(record, order_id=int(record.get("order_id", 0)))


def test_an_applications_error_registers_itself_under_its_record_name() -> None:
    error = PaymentDeclined(42)
    record = json.loads(json.dumps(error.to_record()))
    assert record["type"] == "tests.PaymentDeclinedError"
    for back in (error_from_record(record), pickle.loads(pickle.dumps(error))):
        assert type(back) is PaymentDeclined
        assert _fields(back) == _fields(error)


def test_a_record_name_cannot_be_taken_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_exceptions, "_REGISTRY", dict(_exceptions._REGISTRY))
    with pytest.raises(UserError, match=r"'ToolError' .* already used by perdure\._exceptions\.ToolError"):

        class ToolError(AgentRunError):  # an application's class that happens to share perdure's name
            pass

    class Renamed(AgentRunError):
        record_name = "ToolErrorOfTheApp"

    assert type(error_from_record({"type": "ToolErrorOfTheApp", "message": "m"})) is Renamed
