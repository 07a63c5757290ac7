"""History stays bounded: a model request ships only its new messages, the worker keeps the conversation (or asks
the workflow for it with a query, which is not recorded), and long runs continue as new without losing state."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client

from perdure import RunWaiting
from perdure.messages import ModelMessage
from perdure.temporal import TemporalAgent

from ._agents import PAGE, reader
from ._devserver import SUGGEST_CONTINUE_AS_NEW_EVENTS, DevServer
from .conftest import history_bytes, running_worker


def test_history_bytes_per_turn_stay_constant(temporal_server: DevServer, task_queue: str) -> None:
    """Total history bytes grow linearly with the turns; the conversation itself grows every turn, so a design
    that re-recorded it in every model request would grow quadratically (each increment larger than the last)."""

    async def main() -> dict[int, int]:
        client = await Client.connect(temporal_server.address)
        sizes: dict[int, int] = {}
        for pages in (8, 16, 24):
            ta = TemporalAgent(
                reader(f"bounded-{pages}", pages, []), task_queue=task_queue, client=temporal_server.address
            )
            async with running_worker(client, task_queue, ta):
                rid = f"bounded-{uuid.uuid4().hex[:8]}"
                result = await ta.run("read", run_id=rid)
                assert result.output.startswith(f"read {pages} pages")
                sizes[pages] = await history_bytes(client, rid)
        return sizes

    sizes = asyncio.run(main())
    first, second = (sizes[16] - sizes[8]) / 8, (sizes[24] - sizes[16]) / 8
    assert second < 1.15 * first, sizes  # linear: the next 8 turns cost what the previous 8 did
    # Per turn: about one page in the tool result, once more in the model request, the final output at the end,
    # and the fixed cost of the events: a few pages, whatever the conversation's length. (About 6 pages: how many
    # workflow tasks a turn takes depends on when its parallel calls finish, so the bound leaves a page of room.)
    assert first < 7 * PAGE, sizes


def test_a_worker_without_the_conversation_asks_the_workflow(temporal_server: DevServer, task_queue: str) -> None:
    """With no cache (another worker, a restart), each model request fetches the conversation by query."""
    fetched: list[int] = []

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        cold = TemporalAgent(
            reader("cold", 5, fetched), task_queue=task_queue, client=temporal_server.address, conversation_cache_size=0
        )
        warm = TemporalAgent(reader("warm", 5, []), task_queue=task_queue, client=temporal_server.address)
        async with running_worker(client, task_queue, cold, warm):
            a = await cold.run("read", run_id=f"cold-{uuid.uuid4().hex[:8]}")
            b = await warm.run("read", run_id=f"warm-{uuid.uuid4().hex[:8]}")
        assert a.output == b.output and a.usage() == b.usage()
        assert [m.parts for m in a.all_messages()] == [m.parts for m in b.all_messages()]
        requests = a.usage().requests
        assert cold.conversations.misses == requests - 1  # every request but the first (nothing before it)
        assert (warm.conversations.hits, warm.conversations.misses) == (requests, 0)

    asyncio.run(main())


def _turn_of(page: int) -> int:
    """The turn that fetches ``page``: one page per turn, two on every third turn."""
    turn, done = 0, 0
    while True:
        turn += 1
        step = 2 if done % 3 == 2 else 1
        if done <= page < done + step:
            return turn
        done += step


def _parts(messages: list[ModelMessage]) -> list[Any]:
    return [m.parts for m in messages]


def test_continue_as_new_keeps_run_state_usage_and_approvals(temporal_server: DevServer, task_queue: str) -> None:
    """Continued as new every few steps, with an approval in the middle: the same result as one long history."""
    pages, gate = 12, 5

    async def run(ta: TemporalAgent[None, str], client: Client) -> tuple[Any, str]:
        rid = f"{ta.name}-{uuid.uuid4().hex[:8]}"
        try:
            await ta.run("read", run_id=rid)
        except RunWaiting as waiting:
            (pending,) = waiting.pending
            assert pending["tool_name"] == "fetch_gated" and pending["args"] == {"page": gate}
            await ta.approve(rid, pending["tool_call_id"])
        return await ta.resume(rid), rid

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        fetched_long: list[int] = []
        fetched_short: list[int] = []
        long = TemporalAgent(
            reader("one-history", pages, fetched_long, approve_at=gate),
            task_queue=task_queue,
            client=temporal_server.address,
        )
        short = TemporalAgent(
            reader("many-histories", pages, fetched_short, approve_at=gate),
            task_queue=task_queue,
            client=temporal_server.address,
            max_history_events=30,
        )
        async with running_worker(client, task_queue, long, short):
            (expected, _), (result, rid) = await run(long, client), await run(short, client)
            info = await short.get_run(rid)
        assert result.output == expected.output
        assert result.usage() == expected.usage()
        assert _parts(result.all_messages()) == _parts(expected.all_messages())
        assert sorted(fetched_short) == sorted(fetched_long) == list(range(pages))  # every page fetched once
        assert info.attempts >= 4  # workflow runs: it continued as new several times
        assert info.status == "completed" and info.usage == result.usage()
        keys = [s.key for s in info.steps]
        assert len(set(keys)) == len(keys)  # each step recorded once, across the workflow runs
        assert [k for k in keys if "/approval/" in k] == [f"turn/{_turn_of(gate)}/approval/c{gate}"]
        assert len({s.attempt for s in info.steps}) == info.attempts  # steps from every workflow run

    asyncio.run(main())


def test_temporal_suggests_continue_as_new_and_the_run_goes_on(temporal_server: DevServer, task_queue: str) -> None:
    """The dev server suggests continue-as-new after SUGGEST_CONTINUE_AS_NEW_EVENTS events (see _devserver.py)."""
    pages = SUGGEST_CONTINUE_AS_NEW_EVENTS // 8  # about 8-9 events per page: well past the suggestion
    fetched: list[int] = []

    async def main() -> None:
        client = await Client.connect(temporal_server.address)
        ta = TemporalAgent(reader("suggested", pages, fetched), task_queue=task_queue, client=temporal_server.address)
        async with running_worker(client, task_queue, ta):
            rid = f"suggested-{uuid.uuid4().hex[:8]}"
            result = await ta.run("read", run_id=rid)
            info = await ta.get_run(rid)
        assert result.output.startswith(f"read {pages} pages")
        assert sorted(fetched) == list(range(pages))
        assert info.attempts == 2  # continued as new once

    asyncio.run(main())
