"""The conformance kit by hand: run a scenario in a child process, SIGKILL it mid-tool, resume it in another."""

import tempfile
from pathlib import Path

from perdure.testing.conformance import Harness

with tempfile.TemporaryDirectory() as tmp:
    workdir = Path(tmp)
    harness = Harness(
        "local",  # the engine's name, then its driver: the class that runs, resumes, approves... on that engine
        "perdure.testing.conformance.local:LocalDriver",
        {"journal": str(workdir / "journal.db")},  # the driver's options
        workdir,  # side-effect log and crash markers
    )
    harness.crash("run", "tool:charge_card", scenario="workflow", run_id="w-1")  # SIGKILLed inside charge_card
    out = harness.call("resume", scenario="workflow", run_id="w-1")  # in a new process
    print(out["status"], out["output"])
    for tool in ("charge_card", "send_receipt"):
        calls = harness.tool_effects("w-1", tool)
        print(f"{tool}: executed {len(calls)} time(s), idempotency keys: {len({c['key'] for c in calls})}")
