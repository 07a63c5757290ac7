"""A worker process of the fault suite: ``python -m tests.faults.worker MODE JOURNAL AGENT [ARGS...]``.

Modes:

* ``run RUN_ID``      run (or resume) one run to its end in this process; print its outcome as one JSON line
* ``resume RUN_ID``   resume a run another process left
* ``start RUN_ID...`` accept runs and return (no step executes here)
* ``serve``           be a worker (``DurableAgent.serve``) until SIGTERM or SIGKILL
* ``dbos RUN_ID...``  (JOURNAL is a DBOS system database URL) launch DBOS with a ``DBOSAgent``, run the runs
  concurrently (launching recovers those a dead process left; ``run`` awaits them), print their outputs
* ``approver N``      decide every waiting call until N decisions are made: approve the runs whose id ends in an
  even digit, deny the others

Options come from the environment: ``FAULTS_LEASE`` (seconds, default 30), ``FAULTS_POLL`` (default 0.05).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from perdure import DurableAgent, PerdureError

from .agents import AGENTS


def _durable(journal: str, agent: str) -> DurableAgent[Any, Any]:
    return DurableAgent(
        AGENTS[agent](),
        journal=journal,
        lease_seconds=float(os.environ.get("FAULTS_LEASE", "30")),
        poll_interval=float(os.environ.get("FAULTS_POLL", "0.05")),
    )


def _report(outcome: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()


def _outcome(call: Any) -> dict[str, Any]:
    try:
        result = call()
    except PerdureError as e:
        return {"error": type(e).__name__, "message": str(e), "mro": [c.__name__ for c in type(e).__mro__]}
    return {"output": result.output}


def _approver(durable: DurableAgent[Any, Any], decisions: int) -> None:
    made = 0
    while made < decisions:
        for listed in durable.list_runs_sync(status="waiting"):
            info = durable.get_run_sync(listed.run_id)  # a listing leaves `pending` empty
            for pending in info.pending:
                approved = int(info.run_id[-1]) % 2 == 0
                try:
                    if approved:
                        durable.approve_sync(info.run_id, pending.tool_call_id)
                    else:
                        durable.deny_sync(info.run_id, pending.tool_call_id, note="not this one")
                except PerdureError:
                    continue  # decided a moment ago
                made += 1
                _report({"decided": info.run_id, "approved": approved})
        time.sleep(0.05)


async def _dbos(url: str, agent: str, run_ids: list[str]) -> dict[str, Any]:
    from dbos import DBOS
    from perdure.dbos import DBOSAgent

    DBOS(
        config={
            "name": "perdure-faults",
            "system_database_url": url,
            "application_version": "faults",  # one version: a new process recovers the runs of a dead one
            "log_level": "WARNING",
        }
    )
    dbos_agent = DBOSAgent(AGENTS[agent](), poll_interval=0.05)
    DBOS.launch()
    try:

        async def one(run_id: str) -> dict[str, Any]:
            try:
                result = await dbos_agent.run(f"{run_id}|do the {agent} job", run_id=run_id)
            except PerdureError as e:
                return {"error": type(e).__name__, "message": str(e)}
            return {"output": result.output}

        outcomes = await asyncio.gather(*(one(r) for r in run_ids))
        return dict(zip(run_ids, outcomes, strict=True))
    finally:
        DBOS.destroy()


def main(argv: list[str]) -> None:
    mode, journal, agent, *rest = argv
    if mode == "dbos":
        _report(asyncio.run(_dbos(journal, agent, rest)))
        return
    durable = _durable(journal, agent)
    if mode == "run":
        prompt = f"{rest[0]}|do the {agent} job"
        _report(_outcome(lambda: durable.run_sync(prompt, run_id=rest[0])))
    elif mode == "resume":
        _report(_outcome(lambda: durable.resume_sync(rest[0])))
    elif mode == "start":
        for run_id in rest:
            durable.start_sync(f"{run_id}|do the {agent} job", run_id=run_id)
        _report({"started": rest})
    elif mode == "serve":

        async def serve() -> None:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            _report({"serving": os.getpid()})
            await durable.serve(concurrency=4, stop=stop)

        asyncio.run(serve())
    elif mode == "approver":
        _approver(durable, int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
