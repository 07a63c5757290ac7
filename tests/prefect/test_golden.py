"""Step records written by the previous release (perdure before the durable core, Prefect 3.9.1) still replay.

``golden/results`` holds the result storage of run ``golden-1`` as that release wrote it: two model requests
around a tool call, an approval (decided: the decision record), the approved call and the final answer. A new
flow run of the same run id, on this release, finds every step recorded: nothing executes, nothing waits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from perdure.messages import ModelMessage, ModelResponse
from perdure.prefect import PrefectAgent, TaskConfig

from .agents import Counted, call, returns, text

GOLDEN = Path(__file__).with_name("golden") / "results"


def script(messages: list[ModelMessage], turn: int) -> ModelResponse:
    if turn == 1:
        return ModelResponse(parts=[call("charge", "c1", amount=42)])
    if turn == 2:
        return ModelResponse(parts=[call("refund", "r1", amount=5)])
    return text(f"done: {returns(messages)}")


def test_records_of_the_previous_release_replay(name: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(GOLDEN, results)
    counted = Counted(name, script)
    counted.tool("charge")
    counted.tool("refund", requires_approval=True)
    prefect_agent = PrefectAgent(counted.agent, task_config=TaskConfig(result_storage=results))

    result = prefect_agent.run_sync("charge 42, refund 5", run_id="golden-1")
    assert result.output == "done: charge=charge 42; refund=refund 5"
    assert counted.requests == [] and counted.calls == []  # every step replayed from the golden records
    info = prefect_agent.get_run_sync("golden-1")
    assert [(s.key, s.status, s.attempt) for s in info.steps] == [
        ("turn/1/model", "done", 1),
        ("turn/1/tool/c1", "done", 1),
        ("turn/2/model", "done", 1),
        ("turn/2/approval/r1", "done", 2),
        ("turn/2/tool/r1", "done", 2),
        ("turn/3/model", "done", 2),
    ]
    decision = info.steps[3].result
    assert decision["approved"] is True and decision["note"] == "ok"
