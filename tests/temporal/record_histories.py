"""Record the workflow histories that tests/temporal/test_replay.py replays on every run.

    python -m tests.temporal.record_histories                  # starts a dev server of its own
    python -m tests.temporal.record_histories --address HOST:PORT

Re-record only on purpose: a change that makes these histories fail to replay would break runs in flight on
every worker that deploys it. If the change is intended, keep the old histories (rename them) until no run of
the old shape can still be in flight, and add the new ones next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HISTORIES = Path(__file__).with_name("histories")


def recorded_agents(*, fail_on_nondeterminism: bool = True, fetch_tool: str = "fetch") -> dict[str, Any]:
    """The TemporalAgents of the recorded runs, as the replay test builds them too (by file name).

    The replay test builds them with ``fail_on_nondeterminism=False``: a history that no longer replays then
    raises in the ``Replayer`` (with the failure setting on, temporalio 1.35's ``Replayer`` hangs instead).
    """
    from perdure.temporal import TemporalAgent

    from ._agents import reader, shopper

    flag = {"fail_on_nondeterminism": fail_on_nondeterminism}
    return {
        # Sequential and parallel tool calls, and an approval.
        "reader": TemporalAgent(reader("recorded-reader", 6, [], approve_at=4, fetch_tool=fetch_tool), **flag),
        # The same, continued as new twice: the last workflow run starts from a carried journal.
        "continued": TemporalAgent(
            reader("recorded-continued", 6, [], approve_at=3, fetch_tool=fetch_tool), max_history_events=24, **flag
        ),
        # A tool's ModelRetry, and structured output.
        "shopper": TemporalAgent(shopper("recorded-shopper"), **flag),
    }


async def record(address: str) -> list[Path]:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from perdure import RunWaiting
    from perdure.temporal import PerdurePlugin

    from ._user_workflow import SupportTicket, support

    client = await Client.connect(address)
    agents = recorded_agents()
    task_queue = f"record-{uuid.uuid4().hex[:8]}"
    written: list[Path] = []

    async def save(name: str, workflow_id: str, run_id: str | None = None) -> None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        path = HISTORIES / f"{name}.json"
        path.write_text(history.to_json() + "\n")
        written.append(path)

    async def approve_all(ta: Any, run: Callable[[], Any], run_id: str) -> None:
        while True:
            try:
                await run()
                return
            except RunWaiting as waiting:
                for p in waiting.pending:
                    await ta.approve(run_id, p["tool_call_id"])
                run = lambda: ta.resume(run_id)  # noqa: E731

    worker = Worker(
        client, task_queue=task_queue, workflows=[SupportTicket], plugins=[PerdurePlugin(*agents.values(), support)]
    )
    for ta in [*agents.values(), support]:
        ta.client = client
    async with worker:
        for name, ta in agents.items():
            rid = f"recorded-{name}-{uuid.uuid4().hex[:6]}"
            await ta.start_workflow("go", run_id=rid, task_queue=task_queue)
            await approve_all(ta, lambda ta=ta, rid=rid: ta.resume(rid), rid)
            if name == "continued":
                runs = [wf.run_id async for wf in client.list_workflows(f"WorkflowId = '{rid}'")]
                assert len(runs) >= 3, "the recorded run should have continued as new (twice)"
            await save(name, rid)  # the last workflow run of it

        wf_id = f"recorded-ticket-{uuid.uuid4().hex[:6]}"
        handle = await client.start_workflow(
            SupportTicket.run, {"name": "Ada", "tier": "gold"}, id=wf_id, task_queue=task_queue
        )
        second = f"{wf_id}/2"
        for _ in range(200):
            info = await support.get_run_in_workflow(wf_id, second)
            if info.status == "waiting":
                break
            await asyncio.sleep(0.05)
        await support.approve_in_workflow(wf_id, second, "r1")
        await handle.result()
        await save("support_ticket", wf_id)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a running Temporal server; default: start a dev server")
    args = parser.parse_args()
    os.environ.setdefault("PERDURE_EFFECTS", str(Path(tempfile.mkdtemp()) / "effects.log"))
    HISTORIES.mkdir(exist_ok=True)
    server = None
    if args.address is None:
        from ._devserver import start_dev_server, temporal_binary

        server = start_dev_server(temporal_binary() or "temporal")
    try:
        for path in asyncio.run(record(args.address or server.address)):  # type: ignore[union-attr]
            print(f"wrote {path}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
