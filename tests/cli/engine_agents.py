"""The conformance kit's approval agent as the durable agent of the engine named by ``PERDURE_CLI_ENGINE``, on the
runs of the harness whose options are in ``PERDURE_CONFORMANCE_OPTIONS``: what ``perdure worker`` and ``perdure runs
resume`` import (``tests.cli.engine_agents:approval``), as they would import an application's module."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perdure.testing.conformance.scenarios import build_agent

ENGINE = os.environ["PERDURE_CLI_ENGINE"]
OPTIONS: dict[str, Any] = json.loads(os.environ["PERDURE_CONFORMANCE_OPTIONS"])


def _approval() -> Any:
    agent = build_agent("approval")
    if ENGINE == "local":
        from perdure import DurableAgent

        return DurableAgent(agent, journal=OPTIONS["journal"])
    if ENGINE.startswith("dbos"):
        from dbos import DBOS
        from perdure.dbos import DBOSAgent

        DBOS(
            config={
                "name": "perdure-conformance",
                "system_database_url": OPTIONS["url"],
                "application_version": "conformance",  # as the kit's children: this process recovers their runs
                "log_level": "WARNING",
                "notification_listener_polling_interval_sec": 0.02,
            }
        )
        return DBOSAgent(agent, poll_interval=0.05)
    if ENGINE == "temporal":
        from perdure.temporal import TemporalAgent

        return TemporalAgent(
            agent, client=OPTIONS["address"], namespace=OPTIONS["namespace"], task_queue=OPTIONS["task_queue"]
        )
    assert ENGINE == "prefect"
    os.environ.update(OPTIONS["env"])
    from perdure.prefect import PrefectAgent, TaskConfig

    return PrefectAgent(
        agent,
        name=f"{agent.name}-{OPTIONS['namespace']}",
        task_config=TaskConfig(result_storage=Path(OPTIONS["results"])),
        poll_interval=0.2,
    )


approval = _approval()
