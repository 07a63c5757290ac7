"""The conformance driver of the DBOS adapter (``DBOSAgent`` on a SQLite or PostgreSQL system database).

Options: ``url`` (the DBOS system database URL). ``run`` and ``resume`` launch DBOS in the child, as an
application process would: launching recovers the pending runs, so ``resume`` only waits for the run's result.
``status``, ``approve`` and ``cancel`` act from a process that launches nothing, through the run-admin port
(``perdure.dbos.admin(url)``: a ``DBOSClient``), so they never execute a run themselves.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from ...dbos import DBOSAgent, admin
from .driver import Driver, outcome_of
from .scenarios import build_agent, prompt_for, usage_limits_for

__all__ = ["DBOSDriver"]


class DBOSDriver(Driver):
    _launched = False

    def _launch(self, scenario: str) -> DBOSAgent[Any, Any]:
        _poll_recovery_queue_often()
        DBOS(
            config={
                "name": "perdure-conformance",
                "system_database_url": self.options["url"],
                # Every child runs the same code: one version, so each recovers the runs of the others.
                "application_version": "conformance",
                "log_level": "WARNING",
                # Fast notice of messages and fast shutdown: these children are short-lived.
                "notification_listener_polling_interval_sec": 0.02,
                "scheduler_polling_interval_sec": 0.05,
            }
        )
        dbos_agent = DBOSAgent(build_agent(scenario), poll_interval=0.05)
        DBOS.launch()
        self._launched = True
        return dbos_agent

    async def teardown(self) -> None:
        if self._launched:
            DBOS.destroy(destroy_registry=True)

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        dbos_agent = self._launch(scenario)
        return await outcome_of(
            dbos_agent.run(prompt_for(scenario, run_id), run_id=run_id, usage_limits=usage_limits_for(scenario))
        )

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        dbos_agent = self._launch(scenario)  # DBOS's recovery finishes the run; this waits for its result
        return await outcome_of(dbos_agent.wait(run_id))

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        with admin(self.options["url"]) as runs:
            await runs.decide(run_id, tool_call_id, approved=approved, note=note)
        return await self.status(scenario, run_id)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        with admin(self.options["url"]) as runs:
            await runs.cancel(run_id)
        return await self.status(scenario, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        with admin(self.options["url"]) as runs:
            found = await runs.get_run(run_id)
        assert found is not None, f"no run {run_id!r}"
        info = found.to_json()
        return {"status": info["status"], "pending": info["pending"], "usage": info["usage"], "error": info["error"]}


def _poll_recovery_queue_often() -> None:
    """Make DBOS pick up recovered runs within 50 ms instead of a second (test speed only).

    DBOS recovers a pending workflow by putting it on its internal queue, which it polls every second, waiting
    first; each resuming child would wait that second. The queue's polling interval is no public option, so
    this creates the queue with a short one before launch, through DBOS's registry (best effort: if DBOS
    changes this, recovery is only slower).
    """
    try:
        from dbos import _dbos, _utils

        registry = _dbos._get_or_create_dbos_registry()
        registry._register_internal_queue(_utils.INTERNAL_QUEUE_NAME, polling_interval_sec=0.05)
    except Exception:  # pragma: no cover - a DBOS release without these internals
        pass
