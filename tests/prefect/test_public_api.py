"""The Prefect adapter's public surface and persisted names are pinned; a missing extra says how to install it."""

from __future__ import annotations

import subprocess
import sys

import perdure.prefect
from perdure._exceptions import install_command
from perdure.prefect import _names as names


def test_all_is_pinned() -> None:
    assert perdure.prefect.__all__ == ["PrefectAgent", "TaskConfig"]


def test_persisted_names_are_pinned() -> None:
    # Runs recorded by one version are resumed by the next: none of these may change.
    assert names.DEPLOYMENT == "perdure"
    assert names.TAG == "perdure"
    assert names.MODEL_TASK == "model request"
    assert names.tool_task("refund") == "tool call: refund"
    assert names.OUTCOME_INPUT == "perdure-outcome"
    assert names.INPUT_PREFIX == "perdure-"
    assert names.step_cache_key("refund-42", "turn/1/model") == (
        "perdure/bc19a4cf9d5782601e90bdf33b1d6a59/ca44f1777741249c333305e2f0103cf8"
    )
    assert names.started_key("refund-42", "turn/1/tool/c1") == names.step_cache_key("refund-42", "turn/1/tool/c1") + (
        ".started"
    )
    assert names.pause_key("turn/1/approval/r1") == "perdure-101df7ae2421dbb77f0dae72"
    assert names.pending_input("perdure-ab") == "perdure-ab-pending"
    assert names.decision_input("perdure-ab", 2) == "perdure-ab-decision-2"


def test_cache_keys_are_built_from_the_run_id_and_the_step_key_only() -> None:
    key = names.step_cache_key("r1", "turn/2/tool/c9")
    assert key == names.step_cache_key("r1", "turn/2/tool/c9")
    assert key != names.step_cache_key("r2", "turn/2/tool/c9")
    assert key != names.step_cache_key("r1", "turn/2/tool/c8")
    assert key.split("/")[1] == names.step_cache_key("r1", "turn/1/model").split("/")[1]  # one prefix per run


def test_a_missing_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['prefect'] = None\n"
        "try:\n"
        "    import perdure.prefect\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingExtra |"), out
    assert install_command("prefect") in out  # pip install ... perdure[prefect] from where perdure came from
