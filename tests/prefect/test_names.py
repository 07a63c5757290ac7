"""Every name the Prefect adapter stores, pinned: runs recorded by one version are resumed by the next one.

Flow runs, deployments, tags, task names, run inputs, cache keys and the shape of a step's record are compatibility
data; a test here fails when one of them changes.
"""

from __future__ import annotations

import json

from perdure.durable.ports import StepCall, WaitCall
from perdure.prefect import _names as names
from perdure.prefect._store import record_of


def test_persisted_names_are_pinned() -> None:
    assert names.DEPLOYMENT == "perdure"
    assert names.TAG == "perdure"
    assert names.MODEL_TASK == "model request"
    assert names.tool_task("refund") == "tool call: refund"
    assert names.OUTCOME_INPUT == "perdure-outcome"
    assert names.STEPS_INPUT == "perdure-steps"
    assert names.INPUT_PREFIX == "perdure-"
    assert names.CLAIMED_BY == "perdure: executed by "
    assert names.CONTEXT == "perdure"
    assert names.PARENT_TAG == "parent:"
    assert names.FLOW_FUNCTION == "run_agent"
    assert names.RECORD_VERSION == 1
    assert names.step_cache_key("refund-42", "turn/1/model") == (
        "perdure/bc19a4cf9d5782601e90bdf33b1d6a59/ca44f1777741249c333305e2f0103cf8"
    )
    assert names.run_folder("refund-42") == "perdure/bc19a4cf9d5782601e90bdf33b1d6a59"
    assert names.started_key("refund-42", "turn/1/tool/c1") == names.step_cache_key("refund-42", "turn/1/tool/c1") + (
        ".started"
    )
    assert names.pause_key("turn/1/approval/r1") == "perdure-101df7ae2421dbb77f0dae72"
    assert names.pending_input("perdure-ab") == "perdure-ab-pending"
    assert names.decision_input("perdure-ab", 2) == "perdure-ab-decision-2"
    assert names.claim_input("9b2f3c1e-0000-4000-8000-000000000001") == (
        "perdure-claim-9b2f3c1e-0000-4000-8000-000000000001"
    )
    assert names.claim_input("9b2f", 2) == "perdure-claim-9b2f-2"


def test_cache_keys_are_built_from_the_run_id_and_the_step_key_only() -> None:
    key = names.step_cache_key("r1", "turn/2/tool/c9")
    assert key == names.step_cache_key("r1", "turn/2/tool/c9")
    assert key != names.step_cache_key("r2", "turn/2/tool/c9")
    assert key != names.step_cache_key("r1", "turn/2/tool/c8")
    assert key.split("/")[1] == names.step_cache_key("r1", "turn/1/model").split("/")[1]  # one prefix per run


def test_the_shape_of_a_step_record_is_pinned() -> None:
    call = StepCall("r1", "turn/1/tool/c1", "tool", "a call of tool 'charge'", 2)
    record = record_of(call, json.dumps({"kind": "return", "value": "ok"}), 10.0)
    assert set(record) == {"v", "key", "kind", "describe", "result", "attempt", "started_at", "finished_at"}
    assert (record["v"], record["key"], record["kind"], record["describe"]) == (
        1,
        "turn/1/tool/c1",
        "tool",
        "a call of tool 'charge'",
    )
    assert (record["result"], record["attempt"], record["started_at"]) == ({"kind": "return", "value": "ok"}, 2, 10.0)
    wait = WaitCall("r1", "turn/1/approval/c1", "an approval of tool 'refund'", 1, "refund", "c1", {}, "approval")
    assert record_of(wait, '{"approved": true, "note": null}', 1.0)["kind"] == "wait"
