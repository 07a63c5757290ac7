"""The conformance suite: the durable semantics of DESIGN section 2, on every engine, in real subprocesses."""

from __future__ import annotations

import pytest

from perdure.testing.conformance import Harness


def run(h: Harness, scenario: str, run_id: str) -> dict:
    return h.call("run", scenario=scenario, run_id=run_id)


def test_plain_run(harness: Harness) -> None:
    out = run(harness, "plain", "plain-1")
    assert out["status"] == "completed", out
    assert out["output"] == "hello from perdure"


def test_structured_output(harness: Harness) -> None:
    out = run(harness, "structured", "structured-1")
    assert out["status"] == "completed", out
    assert out["output"] == {"city": "Lisbon", "nights": 3, "confirmation": "LIS-3"}


def test_tool_retry_goes_back_to_the_model(harness: Harness) -> None:
    out = run(harness, "tool_retry", "retry-1")
    assert out["status"] == "completed", out
    assert out["output"] == "found: lookup=booking B"
    assert len(harness.tool_effects("retry-1", "lookup")) == 2  # once refused with ModelRetry, once found


def test_parallel_tool_calls(harness: Harness) -> None:
    out = run(harness, "parallel", "parallel-1")
    assert out["status"] == "completed", out
    assert out["output"] == "done: charge_card=charged 300; reserve=reserved 100; notify=notified 200"
    for name in ("charge_card", "reserve", "notify"):
        assert len(harness.tool_effects("parallel-1", name)) == 1


def test_same_run_id_returns_the_recorded_result(harness: Harness) -> None:
    first = run(harness, "workflow", "idem-1")
    effects_after_first = harness.effects("idem-1")
    second = run(harness, "workflow", "idem-1")
    assert second == first
    assert harness.effects("idem-1") == effects_after_first  # nothing executed again


CRASH_POINTS = [
    "model:1",  # in the first model request
    "tool:charge_card",  # mid-tool (after its side effect)
    "before_model:2",  # between the tool's result and the next request
    "model:2",
    "tool:send_receipt",
    "before_model:3",
    "model:3",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_step_boundary_then_resume(harness: Harness, point: str) -> None:
    reference = run(harness, "workflow", "ref")
    run_id = f"crash-{point.replace(':', '-')}"
    harness.crash("run", point, run_id=run_id, scenario="workflow")
    out = harness.call("resume", scenario="workflow", run_id=run_id)
    assert out["status"] == "completed", out
    assert out["output"] == reference["output"]

    interrupted_tool = point.split(":", 1)[1] if point.startswith("tool:") else None
    for name in ("charge_card", "send_receipt"):
        calls = harness.tool_effects(run_id, name)
        # A tool interrupted mid-call runs again (at-least-once) with the same idempotency key; others once.
        assert len(calls) == (2 if name == interrupted_tool else 1), (name, calls)
        assert len({c["key"] for c in calls}) == 1
    models = [e["key"] for e in harness.model_effects(run_id)]
    interrupted_model = point.replace("model:", "turn/") + "/model" if point.startswith("model:") else None
    for turn in (1, 2, 3):
        key = f"turn/{turn}/model"
        assert models.count(key) == (2 if key == interrupted_model else 1), (key, models)


def test_at_most_once_tool_is_not_run_again_after_a_crash(harness: Harness) -> None:
    harness.crash("run", "tool:transfer", run_id="amo-1", scenario="at_most_once")
    out = harness.call("resume", scenario="at_most_once", run_id="amo-1")
    assert out["status"] == "completed", out
    assert len(harness.tool_effects("amo-1", "transfer")) == 1
    assert "outcome of this call is unknown" in out["output"]


@pytest.mark.parametrize("approved", [True, False])
def test_approval_across_processes(harness: Harness, approved: bool) -> None:
    run_id = f"approval-{approved}"
    out = run(harness, "approval", run_id)
    assert out["status"] == "waiting", out
    (pending,) = out["pending"]
    assert pending["tool_name"] == "refund"
    assert pending["args"] == {"amount": 4200}
    assert harness.call("status", scenario="approval", run_id=run_id)["status"] == "waiting"
    assert harness.tool_effects(run_id) == []

    harness.call(
        "approve",
        scenario="approval",
        run_id=run_id,
        tool_call_id=pending["tool_call_id"],
        approved=approved,
        note="not this one",
    )
    out = harness.call("resume", scenario="approval", run_id=run_id)
    assert out["status"] == "completed", out
    if approved:
        assert out["output"] == "refund: refund=refunded 4200"
        assert len(harness.tool_effects(run_id, "refund")) == 1
    else:
        assert "denied" in out["output"] and "not this one" in out["output"]
        assert harness.tool_effects(run_id, "refund") == []


def test_crash_while_waiting_for_approval(harness: Harness) -> None:
    out = harness.crash_after_result("run", run_id="approval-crash", scenario="approval")
    assert out["status"] == "waiting", out
    # The process that ran it was SIGKILLed while the run waited; the decision comes from another process.
    status = harness.call("status", scenario="approval", run_id="approval-crash")
    assert status["status"] == "waiting", status
    (pending,) = status["pending"]
    harness.call(
        "approve",
        scenario="approval",
        run_id="approval-crash",
        tool_call_id=pending["tool_call_id"],
        approved=True,
        note=None,
    )
    out = harness.call("resume", scenario="approval", run_id="approval-crash")
    assert out["status"] == "completed", out
    assert len(harness.tool_effects("approval-crash", "refund")) == 1


def test_cancel_from_another_process(harness: Harness) -> None:
    proc = harness.spawn("run", scenario="slow", run_id="cancel-1")
    harness.wait_for_file(proc, harness.workdir / "holding-cancel-1", "the held tool call")
    status = harness.call("cancel", scenario="slow", run_id="cancel-1")
    (harness.workdir / "release-cancel-1").write_text("1")
    out = harness.finish(proc, "run")
    assert out["status"] == "cancelled", (out, status)
    assert harness.call("status", scenario="slow", run_id="cancel-1")["status"] == "cancelled"
    assert len(harness.model_effects("cancel-1")) == 1  # stopped at the boundary: no second model request


def test_usage_limits_hold_across_a_resume(harness: Harness) -> None:
    harness.crash("run", "tool:tick", run_id="limits-1", scenario="looping")
    out = harness.call("resume", scenario="looping", run_id="limits-1")
    assert out["status"] == "failed", out
    assert out["error"]["type"] == "UsageLimitExceeded"
    assert len(harness.model_effects("limits-1")) == 3  # request_limit=3, counted across both processes


def test_non_determinism_is_detected(harness: Harness) -> None:
    harness.crash("run", "before_model:2", run_id="nondet-1", scenario="workflow")
    out = harness.call("resume", {"PERDURE_SCENARIO_VARIANT": "renamed"}, scenario="workflow", run_id="nondet-1")
    assert out["status"] == "failed", out
    assert out["error"]["type"] == "NonDeterminismError"
    assert "turn/1" in out["error"]["message"]
    assert "charge_card" in out["error"]["message"]
    assert len(harness.tool_effects("nondet-1")) == 1  # nothing re-executed on the mismatch


def test_a_prompt_with_a_file_is_replayed_exactly_after_a_crash(harness: Harness) -> None:
    from perdure.testing.conformance.scenarios import PICTURE

    harness.crash("run", "tool:look", run_id="vision-1", scenario="vision")
    out = harness.call("resume", scenario="vision", run_id="vision-1")
    assert out["status"] == "completed", out
    assert out["output"] == f"saw {PICTURE.identifier}"  # the resumed request carried the same bytes
    assert len(harness.model_effects("vision-1")) == 2
