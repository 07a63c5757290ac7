"""The public surface: ``perdure.__all__`` is pinned, and ``import perdure`` stays light."""

import json
import subprocess
import sys

import perdure


def test_all_is_pinned() -> None:
    assert perdure.__all__ == [
        "Agent",
        "AgentRunError",
        "AgentRunResult",
        "ApprovalRequired",
        "DurableAgent",
        "MissingExtra",
        "ModelHTTPError",
        "ModelRetry",
        "NonDeterminismError",
        "PendingDecision",
        "PerdureError",
        "RunCancelled",
        "RunContext",
        "RunInProgress",
        "RunInfo",
        "RunStatus",
        "RunWaiting",
        "StepInfo",
        "Tool",
        "ToolError",
        "UnexpectedModelBehavior",
        "Usage",
        "UsageLimitExceeded",
        "UsageLimits",
        "UserError",
        "__version__",
    ]


def test_eager_names_are_importable() -> None:
    lazy = {"DurableAgent"}  # the embedded engine, imported on first use
    for name in set(perdure.__all__) - lazy:
        assert getattr(perdure, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        perdure.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018 - the access is the test
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_perdure_imports_no_engine_and_no_provider_sdk() -> None:
    code = (
        "import json, sys; import perdure, perdure.messages, perdure.models, perdure.models.test, "
        "perdure.models.function; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    heavy = {"openai", "anthropic", "temporalio", "dbos", "prefect", "sqlite3", "_sqlite3", "httpx"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith(("perdure.local", "perdure.models.openai"))}
    assert not {m for m in loaded if m.startswith(("perdure.models.anthropic", "perdure.temporal"))}
    assert not {m for m in loaded if m.startswith(("perdure.dbos", "perdure.prefect"))}


def test_run_records_and_adapters_load_no_embedded_engine() -> None:
    """The run records are the core's: importing them, or an adapter's module, loads neither sqlite3 nor
    perdure.local (each adapter in its own interpreter)."""
    for module in ("perdure.runs", "perdure.durable.base", "perdure.dbos", "perdure.temporal", "perdure.prefect"):
        code = f"import json, sys; import {module}; from perdure import RunInfo; print(json.dumps(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        loaded = set(json.loads(out.stdout))
        assert not {"sqlite3", "_sqlite3"} & loaded or module in ("perdure.dbos", "perdure.prefect"), module
        assert not {m for m in loaded if m.startswith("perdure.local")}, module


def test_testing_all_is_pinned() -> None:
    import perdure.testing

    assert perdure.testing.__all__ == [
        "AgentInfo",
        "DeltaToolCall",
        "FunctionModel",
        "MemoryAgent",
        "MemoryRuns",
        "TestModel",
    ]


def test_the_memory_engine_runs_in_process() -> None:
    from perdure.testing import MemoryAgent, TestModel

    agent = perdure.Agent(TestModel(), name="mem")
    durable = MemoryAgent(agent)
    first = durable.run_sync("hi", run_id="m1")
    assert durable.run_sync("hi", run_id="m1").output == first.output  # recorded: nothing executes again
    assert durable.get_run_sync("m1").status == "completed"
    assert [r.run_id for r in durable.list_runs_sync()] == ["m1"]
