"""Embedded-engine benchmarks (issue 3): the commit floor, per-step overhead, group commit, journal growth,
recovery on a large journal."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import STEPS_PER_RUN, median, ms, n_turn_script, workload_agent

from perdure import DurableAgent, UsageLimits


def commit_floor(directory: Path, synchronous: str, n: int = 1500) -> float:
    """One small INSERT + COMMIT in WAL mode: what any journal must pay per durable step."""
    path = directory / f"floor-{synchronous}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    payload = "x" * 300
    times = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", payload))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
    conn.close()
    return median(times)


def per_step_overhead(directory: Path, durability: str, batches: int = 15, runs: int = 20) -> dict[str, float]:
    """Plain agent.run vs DurableAgent.run on the same workload, batches interleaved; overhead per step."""
    agent = workload_agent(f"bench-{durability}")
    durable = DurableAgent(agent, journal=directory / f"steps-{durability}.db", durability=durability)  # type: ignore[arg-type]
    counter = iter(range(10**9))

    async def plain_batch() -> float:
        t = time.perf_counter()
        for _ in range(runs):
            await agent.run("go")
        return (time.perf_counter() - t) / runs

    async def durable_batch() -> float:
        t = time.perf_counter()
        for _ in range(runs):
            await durable.run("go", run_id=f"r{next(counter)}")
        return (time.perf_counter() - t) / runs

    async def main() -> dict[str, float]:
        await plain_batch()
        await durable_batch()
        plain, dur = [], []
        for _ in range(batches):
            plain.append(await plain_batch())
            dur.append(await durable_batch())
        return {"plain_run": median(plain), "durable_run": median(dur)}

    result = asyncio.run(main())
    result["per_step"] = (result["durable_run"] - result["plain_run"]) / STEPS_PER_RUN
    return result


def concurrency(directory: Path, n: int = 100, repeats: int = 5) -> dict[str, float]:
    """100 concurrent runs in one process (group commit) vs the same runs one after another."""
    agent = workload_agent("bench-conc")
    counter = iter(range(10**9))

    async def go(parallel: bool) -> tuple[float, int]:
        durable = DurableAgent(agent, journal=directory / f"conc-{next(counter)}.db")
        before = durable._journal.commits
        t = time.perf_counter()
        if parallel:
            await asyncio.gather(*(durable.run("go", run_id=f"c{i}") for i in range(n)))
        else:
            for i in range(n):
                await durable.run("go", run_id=f"s{i}")
        return time.perf_counter() - t, durable._journal.commits - before

    async def main() -> dict[str, float]:
        par, seq, commits_par, commits_seq = [], [], [], []
        for _ in range(repeats):
            t, c = await go(True)
            par.append(t)
            commits_par.append(c)
            t, c = await go(False)
            seq.append(t)
            commits_seq.append(c)
        return {
            "concurrent_rps": n / median(par),
            "sequential_rps": n / median(seq),
            "commits_concurrent": median([float(c) for c in commits_par]),
            "commits_sequential": median([float(c) for c in commits_seq]),
        }

    return asyncio.run(main())


def journal_growth(directory: Path) -> list[tuple[int, int, int]]:
    """Bytes recorded for runs of 10, 25 and 50 turns: steps' results and the file after a checkpoint."""
    out = []
    for turns in (10, 25, 50):
        path = directory / f"growth-{turns}.db"
        agent = workload_agent(f"growth-{turns}", n_turn_script(turns))
        durable = DurableAgent(agent, journal=path)
        durable.run_sync("go", run_id="g", usage_limits=UsageLimits(request_limit=None))
        j = durable._journal
        recorded = j.query("SELECT COALESCE(SUM(LENGTH(result)), 0) FROM perdure_steps WHERE run_id = 'g'")[0][0]
        j.query("PRAGMA wal_checkpoint(TRUNCATE)")
        out.append((turns, int(recorded), os.path.getsize(path)))
    return out


def recover_large(
    directory: Path,
    finished: int = 10_000,
    orphans: int = 10,
    repeats: int = 5,
    *,
    steps_of_finished: int | None = None,
) -> tuple[float, float]:
    """recover() on a journal of ``finished`` finished runs and 10 orphans: time to the first resumed step executed;
    and ``list_runs(limit=50)`` on that journal. Only the first ``steps_of_finished`` finished runs get their steps
    (recover and listing read run rows; a million runs' steps would only make the file bigger)."""
    first_call: list[float] = []

    def script(messages: Any, info: Any) -> Any:
        first_call.append(time.perf_counter())
        return n_turn_script(5)(messages, info)

    agent = workload_agent("bench-recover", script)
    template = directory / "recover-template.db"
    durable = DurableAgent(agent, journal=template)
    durable.run_sync("go", run_id="seed")
    j = durable._journal
    cols_runs = [r[1] for r in j.query("PRAGMA table_info(perdure_runs)")]
    cols_steps = [r[1] for r in j.query("PRAGMA table_info(perdure_steps)")]
    run_row = j.query("SELECT * FROM perdure_runs WHERE run_id = 'seed'")[0]
    steps = j.query("SELECT * FROM perdure_steps WHERE run_id = 'seed' ORDER BY seq")
    ri, si = cols_runs.index("run_id"), cols_steps.index("run_id")
    rows, step_rows = [], []
    created = cols_runs.index("created_at")
    for i in range(finished):
        r = list(run_row)
        r[ri] = f"done-{i}"
        r[created] = run_row[created] - finished + i  # distinct creation times, oldest first
        rows.append(r)
        if steps_of_finished is not None and i >= steps_of_finished:
            continue
        for s in steps:
            s2 = list(s)
            s2[si] = f"done-{i}"
            step_rows.append(s2)
    dead = "otherhost:4242:1"  # an owner on another machine whose lease expired long ago
    for i in range(orphans):
        r = list(run_row)
        r[ri] = f"orphan-{i}"
        r[cols_runs.index("status")] = "running"
        r[cols_runs.index("owner")] = dead
        r[cols_runs.index("lease_expires")] = 1.0
        r[cols_runs.index("finished_at")] = None
        r[cols_runs.index("output")] = None
        rows.append(r)
        for s in steps[:4]:  # two model turns and a tool call recorded; the rest must execute
            s2 = list(s)
            s2[si] = f"orphan-{i}"
            step_rows.append(s2)
    marks_r = ",".join("?" * len(cols_runs))
    marks_s = ",".join("?" * len(cols_steps))
    j._conn.execute("BEGIN")
    j._conn.executemany(f"INSERT INTO perdure_runs VALUES ({marks_r})", rows)
    j._conn.executemany(f"INSERT INTO perdure_steps VALUES ({marks_s})", step_rows)
    j._conn.execute("COMMIT")
    j.query("PRAGMA wal_checkpoint(TRUNCATE)")
    del rows, step_rows
    times, listing = [], []
    for k in range(repeats):
        copy = directory / f"recover-{k}.db"
        shutil.copy(template, copy)
        d = DurableAgent(agent, journal=copy)
        first_call.clear()
        t = time.perf_counter()
        ids = d.recover_sync()
        assert len(ids) == orphans, ids
        times.append(first_call[0] - t)

        async def list_newest(d: DurableAgent[Any, Any] = d) -> list[float]:
            out = []
            for _ in range(20):
                t = time.perf_counter()
                assert len(await d.list_runs(limit=50)) == 50
                out.append(time.perf_counter() - t)
            return out

        listing.append(median(asyncio.run(list_newest())))
        copy.unlink()
    template.unlink()
    return median(times), median(listing)


def run() -> str:
    directory = Path(tempfile.mkdtemp(prefix="perdure-bench-", dir=os.environ.get("PERDURE_BENCH_DIR")))
    try:
        floor_full = commit_floor(directory, "FULL")
        floor_normal = commit_floor(directory, "NORMAL")
        full = per_step_overhead(directory, "full")
        normal = per_step_overhead(directory, "normal")
        conc = concurrency(directory)
        growth = journal_growth(directory)
        rec, listing = recover_large(directory)
        big = int(os.environ.get("PERDURE_BENCH_RECOVER_RUNS", "1000000"))
        rec_big, listing_big = recover_large(directory, finished=big, repeats=3, steps_of_finished=10_000)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lines = [
        "## Embedded engine: DurableAgent on SQLite (issue 3)",
        "",
        f"Workload: FunctionModel, 5 tool calls per run ({STEPS_PER_RUN} durable steps), trivial async tool.",
        "",
        "| measure | median | ratio | goal |",
        "|---|---|---|---|",
        f"| floor: SQLite WAL insert+commit, synchronous=FULL | {ms(floor_full)} | | |",
        f"| floor: SQLite WAL insert+commit, synchronous=NORMAL | {ms(floor_normal)} | | |",
        f"| plain `agent.run`, per run | {ms(full['plain_run'])} | | |",
        f"| `DurableAgent.run` durability=full (default), per run | {ms(full['durable_run'])} | | |",
        f"| overhead per step, durability=full | {ms(full['per_step'])} | "
        f"{full['per_step'] / floor_full:.2f}x the FULL floor | <= 2x |",
        f"| overhead per step, durability=normal | {ms(normal['per_step'])} | "
        f"{normal['per_step'] / floor_normal:.2f}x the NORMAL floor | <= 2x |",
        f"| 100 runs one after another (full) | {conc['sequential_rps']:.1f} runs/s, "
        f"{conc['commits_sequential']:.0f} commits | | |",
        f"| 100 concurrent runs in one process (full) | {conc['concurrent_rps']:.1f} runs/s, "
        f"{conc['commits_concurrent']:.0f} commits | {conc['concurrent_rps'] / conc['sequential_rps']:.1f}x "
        "sequential | >= 5x |",
        f"| `recover()` with 10,000 finished + 10 orphaned runs: to the first resumed step | {ms(rec)} | | <= 50 ms |",
        f"| `recover()` with {big:,} finished + 10 orphaned runs: to the first resumed step | {ms(rec_big)} | "
        "| <= 50 ms |",
        f"| `list_runs(limit=50)`, 10,000 runs / {big:,} runs | {ms(listing)} / {ms(listing_big)} | | <= 5 ms |",
        "",
        "Journal growth (history stored once per run; each step stores only its own result):",
        "",
        "| turns | bytes of recorded step results | bytes per turn | journal file after checkpoint |",
        "|---|---|---|---|",
    ]
    for turns, recorded, size in growth:
        lines.append(f"| {turns} | {recorded:,} | {recorded / turns:,.0f} | {size:,} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
