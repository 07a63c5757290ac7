"""What a run stores is plain JSON: it works with DBOS's portable serializer as with its default (pickle)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbos import DBOS, DBOSPortableJSONSerializer
from perdure import NonDeterminismError, RunWaiting
from perdure.dbos import DBOSAgent, admin
from perdure.dbos._codec import RunFailed, run_error

from . import agents


@pytest.fixture
def portable(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'portable.sqlite'}"
    DBOS(
        config={
            "name": "perdure-tests",
            "system_database_url": url,
            "log_level": "ERROR",
            "serializer": DBOSPortableJSONSerializer(),
            "notification_listener_polling_interval_sec": 0.02,
            "scheduler_polling_interval_sec": 0.05,
        }
    )
    yield url
    DBOS.destroy(destroy_registry=True)


def test_runs_and_approvals_with_the_portable_serializer(portable: str) -> None:
    booking_agent, _ = agents.structured()
    refunds, executed = agents.approval()
    bookings, approvals = DBOSAgent(booking_agent, poll_interval=0.05), DBOSAgent(refunds, poll_interval=0.05)
    DBOS.launch()
    first = bookings.run_sync("book", run_id="p-1")
    assert bookings.run_sync("book", run_id="p-1").output == first.output == agents.Booking(city="Lisbon", nights=3)

    async def main() -> None:
        with pytest.raises(RunWaiting):
            await approvals.run("refund", run_id="p-2")
        with admin(portable) as runs:
            await runs.decide("p-2", "r1", approved=True)
        assert (await approvals.wait("p-2")).output == "refund: refund=refunded 4200"

    asyncio.run(main())
    assert executed == ["p-2"]


def test_a_run_error_survives_both_serializers() -> None:
    from dbos._serialization import DefaultSerializer, deserialize_exception, serialize_exception

    error = NonDeterminismError(run_id="r", step_key="turn/1/model", recorded="one thing", requested="another")
    for serializer in (DefaultSerializer(), DBOSPortableJSONSerializer()):
        text, name = serialize_exception(RunFailed.wrap(error), None, serializer)
        back = run_error(deserialize_exception(text, name, serializer))
        assert isinstance(back, NonDeterminismError)
        assert (back.step_key, back.recorded, back.requested) == ("turn/1/model", "one thing", "another")
