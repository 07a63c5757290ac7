"""Durable runs on DBOS Transact: ``DBOSAgent``, on a PostgreSQL (or SQLite) system database.

::

    from dbos import DBOS
    from perdure.dbos import DBOSAgent

    DBOS(config={"name": "support", "system_database_url": "postgresql://postgres@localhost/support"})
    dbos_agent = DBOSAgent(agent)          # before DBOS.launch(): it registers the run workflow
    DBOS.launch()                          # a restarted process finishes the pending runs here
    result = await dbos_agent.run("Refund order 42", run_id="refund-42")

Runs can be inspected, decided, cancelled and pruned from any process, with no agent and no launched DBOS::

    with admin("postgresql://postgres@localhost/support") as runs:
        waiting = await runs.list_runs(status=["waiting"])

Needs the ``dbos`` extra: ``pip install "perdure[dbos]"``.
"""

from .._exceptions import MissingExtra

try:
    import dbos as _dbos  # noqa: F401 - checked here so the error names the extra to install
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise MissingExtra("dbos", "dbos") from e

from ._admin import DBOSAdmin, admin
from ._agent import DBOSAgent

__all__ = ["DBOSAdmin", "DBOSAgent", "admin"]
