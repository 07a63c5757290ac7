"""DBOS benchmarks (issue 4): perdure's DBOSAgent next to pydantic-ai's DBOS integration and the embedded engine,
on DBOS's SQLite and PostgreSQL system databases, same workload, side by side in one process per database.

Each database configuration runs in a child process (DBOS is one instance per process): it registers
perdure's DBOSAgent, pydantic-ai's DBOSAgent and a bare DBOS workflow of trivial steps, launches DBOS, and
measures them interleaved.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import STEPS_PER_RUN, TOOL_CALLS, median, ms, workload_agent

BATCHES = 7
RUNS = 10
CONCURRENT = 100


def _pydantic_ai_agent() -> Any:
    """The same workload on pydantic-ai: FunctionModel, 5 tool calls, the tool a DBOS step by hand (so a crash
    re-runs only the interrupted call, like perdure's tools)."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from dbos import DBOS

    def script(messages: list[Any], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
        if turn <= TOOL_CALLS:
            return ModelResponse(parts=[ToolCallPart("add", {"a": turn, "b": 1}, tool_call_id=f"c{turn}")])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(script), name="pai-bench")

    @agent.tool_plain
    @DBOS.step()
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


def child(url: str) -> dict[str, Any]:
    from pydantic_ai.durable_exec.dbos import DBOSAgent as PaiDBOSAgent

    from dbos import DBOS
    from perdure.dbos import DBOSAgent

    DBOS(config={"name": "perdure-bench", "system_database_url": url, "log_level": "WARNING"})
    ours = workload_agent("perdure-bench")
    perdure_agent = DBOSAgent(ours)
    pai_plain = _pydantic_ai_agent()
    pai_agent = PaiDBOSAgent(pai_plain)

    @DBOS.step()
    async def trivial_step(i: int) -> int:
        return i

    @DBOS.workflow()
    async def steps_workflow(n: int) -> int:
        total = 0
        for i in range(n):
            total += await trivial_step(i)
        return total

    DBOS.launch()

    async def timed(make: Any) -> float:
        t = time.perf_counter()
        for _ in range(RUNS):
            await make()
        return (time.perf_counter() - t) / RUNS

    async def workflow_with(n: int) -> Any:
        return await steps_workflow(n)

    def wid() -> str:
        return uuid.uuid4().hex

    async def pai_run() -> Any:
        from dbos import SetWorkflowID

        with SetWorkflowID(wid()):
            return await pai_agent.run("go")

    candidates = {
        "perdure_plain": lambda: ours.run("go"),
        "perdure_dbos": lambda: perdure_agent.run("go", run_id=wid()),
        "pai_plain": lambda: pai_plain.run("go"),
        "pai_dbos": pai_run,
        "wf_steps": lambda: workflow_with(STEPS_PER_RUN),
        "wf_empty": lambda: workflow_with(0),
    }

    async def main() -> dict[str, Any]:
        for make in candidates.values():  # warm up
            await timed(make)
        samples: dict[str, list[float]] = {k: [] for k in candidates}
        for _ in range(BATCHES):
            for name, make in candidates.items():
                samples[name].append(await timed(make))
        result: dict[str, Any] = {k: median(v) for k, v in samples.items()}
        for name, make in (("perdure_conc", candidates["perdure_dbos"]), ("pai_conc", candidates["pai_dbos"])):
            t = time.perf_counter()
            await asyncio.gather(*(make() for _ in range(CONCURRENT)))
            result[name] = CONCURRENT / (time.perf_counter() - t)
        return result

    try:
        return asyncio.run(main())
    finally:
        DBOS.destroy()


def _postgres_url() -> tuple[str, str] | None:
    try:
        import psycopg
    except ImportError:
        return None
    name = f"perdure_bench_{os.getpid()}"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _in_child(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "child", url],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).parent,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"bench child failed:\n{out.stderr[-3000:]}")


def run() -> str:
    directory = Path(tempfile.mkdtemp(prefix="perdure-bench-dbos-"))
    results: dict[str, dict[str, Any]] = {"SQLite": _in_child(f"sqlite:///{directory / 'dbos.sqlite'}")}
    pg = _postgres_url()
    if pg is not None:
        try:
            results["PostgreSQL"] = _in_child(pg[1])
        finally:
            _drop(pg[0])
    lines = [
        "## DBOS (issue 4)",
        "",
        f"Workload: FunctionModel, {TOOL_CALLS} tool calls per run ({STEPS_PER_RUN} durable steps). Per-step overhead "
        "= (durable run - the same agent's plain run) / 11. pydantic-ai 2.68's DBOSAgent runs the same workload with "
        "its tool made a DBOS step by hand. A bare DBOS workflow of 11 trivial steps gives one step checkpoint "
        "alone: (11-step workflow - empty workflow) / 11.",
        "",
        "| system database | one DBOS step alone | perdure DBOSAgent per step | pydantic-ai DBOSAgent per step | "
        "perdure / pydantic-ai | perdure / one step | 100 concurrent runs: perdure | 100 concurrent: pydantic-ai |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for db, r in results.items():
        step = (r["wf_steps"] - r["wf_empty"]) / STEPS_PER_RUN
        ours = (r["perdure_dbos"] - r["perdure_plain"]) / STEPS_PER_RUN
        theirs = (r["pai_dbos"] - r["pai_plain"]) / STEPS_PER_RUN
        lines.append(
            f"| {db} | {ms(step)} | {ms(ours)} | {ms(theirs)} | {ours / theirs:.2f}x | {ours / step:.2f}x | "
            f"{r['perdure_conc']:.1f} runs/s | {r['pai_conc']:.1f} runs/s |"
        )
    if pg is None:
        lines.append("| PostgreSQL | not measured: no server at 127.0.0.1:5432 | | | | | | |")
    lines += ["", "Goals: perdure per step <= pydantic-ai's, and <= 1.5x one DBOS step measured alone.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(sys.argv[2])))
    else:
        print(run())
