"""Errors: one hierarchy, and run errors that survive a trip through JSON (a journal, another process)."""

import json
from pathlib import Path

import pytest

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


def _round_trip(error: AgentRunError) -> AgentRunError:
    return error_from_record(json.loads(json.dumps(error.to_record())))


@pytest.mark.parametrize(
    "error",
    [
        AgentRunError("failed"),
        UsageLimitExceeded("too many requests"),
        RunCancelled("cancelled"),
        UnexpectedModelBehavior("bad output", body="raw body"),
        ModelHTTPError("overloaded", status_code=529, model_name="claude", transient=True),
        ToolError("tool 'pay' failed: boom", tool_name="pay", error_type="RuntimeError"),
        NonDeterminismError(run_id="r1", step_key="turn/2/model", recorded="a tool call", requested="a request"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_run_errors_round_trip_through_their_record(error: AgentRunError) -> None:
    rebuilt = _round_trip(error)
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    assert vars(rebuilt) == vars(error)


def test_unknown_record_kinds_become_agent_run_errors() -> None:
    rebuilt = error_from_record({"type": "SomethingNew", "message": "from a newer version"})
    assert type(rebuilt) is AgentRunError
    assert str(rebuilt) == "from a newer version"
