"""Prefect benchmarks (issue 6): perdure's PrefectAgent next to pydantic-ai 2.68's Prefect integration on the same
local Prefect server, same workload, side by side; a bare Prefect flow of trivial tasks as the floor.

``run()`` starts ``prefect server start`` on a free loopback port with its own ``PREFECT_HOME`` and SQLite
database in a temp dir (services nothing here needs turned off), and measures in one child process, whose
Prefect settings point at that server (they must be in the environment before Prefect is imported):

* perdure: ``PrefectAgent(agent)``; each run is a flow run of the agent's deployment, executed in this process;
* pydantic-ai: the current recommended way in 2.68, a regular ``Agent`` with the ``PrefectDurability``
  capability, run by a ``@flow`` that awaits ``agent.run(...)`` (the ``PrefectAgent`` wrapper is deprecated);
* bare Prefect: a ``@flow`` calling N trivial ``@task``\\ s with persisted results, one after another.

Both agents persist every step's result in Prefect's default result storage (under the temp ``PREFECT_HOME``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

BATCHES = 5
RUNS = 2
CONCURRENT = 10
START_TIMEOUT = 120.0


def _pai_agent() -> Any:
    """The workload on pydantic-ai: FunctionModel, 5 tool calls (one per turn), then a text answer."""
    from _common import TOOL_CALLS
    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.prefect import PrefectDurability
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def script(messages: list[Any], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
        if turn <= TOOL_CALLS:
            return ModelResponse(parts=[ToolCallPart("add", {"a": turn, "b": 1}, tool_call_id=f"c{turn}")])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(script), name="pai-bench", capabilities=[PrefectDurability()])

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


class _Retries(logging.Handler):
    """Counts the requests Prefect's client retried (HTTP 503 from a busy server, and transport errors)."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retryable" in record.getMessage():
            _Retries.count += 1


def _count_retries() -> None:
    # Prefect's client logs each retry at DEBUG on "prefect.client": count them, keep them off the console.
    logger = logging.getLogger("prefect.client")
    logger.addHandler(_Retries(logging.DEBUG))
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


async def _child() -> dict[str, Any]:
    from _common import STEPS_PER_RUN, median, workload_agent

    from perdure.prefect import PrefectAgent
    from prefect import flow, task

    _count_retries()
    ours = workload_agent("perdure-bench")
    perdure_agent = PrefectAgent(ours)
    pai_agent = _pai_agent()  # outside a flow the capability is transparent: also the plain run

    @flow(name="pai-bench-run", log_prints=False)
    async def pai_flow(prompt: str) -> str:
        result = await pai_agent.run(prompt)
        output: str = result.output
        return output

    @task(persist_result=True, log_prints=False)
    async def trivial(i: int) -> int:
        return i

    @flow(name="bench-trivial-tasks", log_prints=False)
    async def steps_flow(n: int) -> int:
        total = 0
        for i in range(n):
            total += await trivial(i)
        return total

    async def perdure_run() -> Any:
        return await perdure_agent.run("go", run_id=f"perdure-{uuid.uuid4().hex[:12]}")

    candidates = {
        "perdure_plain": lambda: ours.run("go"),
        "perdure_prefect": perdure_run,
        "pai_plain": lambda: pai_agent.run("go"),
        "pai_prefect": lambda: pai_flow("go"),
        "wf_steps": lambda: steps_flow(STEPS_PER_RUN),
        "wf_empty": lambda: steps_flow(0),
    }
    retries = dict.fromkeys(candidates, 0)

    async def timed(name: str) -> tuple[float, float]:
        """Wall time and this process's CPU time (all threads) per run."""
        before = _Retries.count
        t, c = time.perf_counter(), time.process_time()
        for _ in range(RUNS):
            await candidates[name]()
        elapsed, cpu = (time.perf_counter() - t) / RUNS, (time.process_time() - c) / RUNS
        retries[name] += _Retries.count - before
        return elapsed, cpu

    result: dict[str, Any] = {}
    a, b = await perdure_run(), await pai_flow("go")
    assert a.output == b == "done", (a.output, b)
    for make in candidates.values():  # warm up
        await make()
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in candidates}
    for _ in range(BATCHES):
        for name in candidates:
            samples[name].append(await timed(name))
    result.update({k: median([w for w, _ in v]) for k, v in samples.items()})
    result["cpu"] = {k: median([c for _, c in v]) for k, v in samples.items()}
    result["retries"] = retries

    for name, make in (("perdure_conc", perdure_run), ("pai_conc", lambda: pai_flow("go"))):
        before = _Retries.count
        t = time.perf_counter()
        outcomes = await asyncio.gather(*(make() for _ in range(CONCURRENT)), return_exceptions=True)
        elapsed = time.perf_counter() - t
        errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if isinstance(o, BaseException)]
        result[name] = (CONCURRENT - len(errors)) / elapsed
        result[f"{name}_failures"] = errors
        result[f"{name}_retries"] = _Retries.count - before
    return result


def child_main() -> None:
    print(json.dumps(asyncio.run(_child())), flush=True)


# --- the parent: the server, the child, the table ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server:
    """A local Prefect server: free loopback port, its own PREFECT_HOME and SQLite database in a temp dir."""

    def __init__(self, database_url: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="perdure-bench-prefect-"))
        self.database_url = database_url or f"sqlite+aiosqlite:///{self.root / 'prefect.db'}"
        self.home = self.root / "home"
        self.api_url = f"http://127.0.0.1:{_free_port()}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def client_env(self) -> dict[str, str]:
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_CLIENT_MAX_RETRIES": "10",  # the SQLite-backed server answers 503 when busy: retried
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
        }

    def start(self) -> None:
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=self.database_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
            PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
            PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
            PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        port = self.api_url.rsplit(":", 1)[1].split("/")[0]
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port]
        with open(self.root / "server.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited ({self.proc.returncode}):\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Prefect server did not answer in {START_TIMEOUT}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


def _in_child(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "child"],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).parent,
        env={**os.environ, **env, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"bench child failed:\n{out.stderr[-3000:]}")


def _postgres() -> tuple[str, str] | None:
    """A fresh database on the local PostgreSQL (127.0.0.1:5432), or None without one."""
    try:
        import asyncpg  # noqa: F401  # Prefect's PostgreSQL driver
        import psycopg
    except ImportError:
        return None
    name = f"perdure_bench_prefect_{os.getpid()}"
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(database_url: str | None) -> dict[str, Any]:
    server = _Server(database_url)
    try:
        server.start()
        return _in_child(server.client_env())
    finally:
        server.stop()


def run() -> str:
    from _common import STEPS_PER_RUN, TOOL_CALLS, ms

    results: dict[str, dict[str, Any]] = {"SQLite": _measure(None)}
    pg = _postgres()
    if pg is not None:
        try:
            results["PostgreSQL"] = _measure(pg[1])
        finally:
            _drop(pg[0])
    lines = [
        "## Prefect (issue 6)",
        "",
        f"Workload: FunctionModel, {TOOL_CALLS} tool calls per run ({STEPS_PER_RUN} durable steps), on a local "
        "Prefect server (`prefect server start`, temp PREFECT_HOME) on SQLite (the default) and on PostgreSQL. "
        "Per-step overhead = (durable run - the same agent's plain run) / 11, medians of "
        f"{BATCHES} interleaved batches of {RUNS} sequential runs. perdure: `PrefectAgent` (each run a flow run of "
        "the agent's deployment, executed in-process). pydantic-ai 2.68: the current recommended "
        "`PrefectDurability` capability on a regular `Agent`, awaited inside a `@flow` (the `PrefectAgent` wrapper "
        "is deprecated in 2.68). The floor: a bare `@flow` of 11 trivial `@task`s with persisted results, "
        "(11-task flow - empty flow) / 11. Every step's result is persisted (Prefect's default local storage).",
        "",
        "The Prefect server answers HTTP 503 when its database is busy (SQLite: `SQLITE_BUSY`), and Prefect's "
        "client retries after an exponential backoff (about 2 s, then 4 s, 8 s...): the 503 column counts the "
        "requests retried while measuring each system, since a single retry outweighs every other cost here.",
        "",
        "| server database | one task (floor) | perdure PrefectAgent per step | pydantic-ai PrefectDurability per "
        "step | perdure / pydantic-ai | perdure / one task | durable run: perdure, pydantic-ai | CPU per durable "
        "run (this process): perdure, pydantic-ai | 503s retried (perdure, pydantic-ai, floor) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for db, r in results.items():
        step = (r["wf_steps"] - r["wf_empty"]) / STEPS_PER_RUN
        ours = (r["perdure_prefect"] - r["perdure_plain"]) / STEPS_PER_RUN
        theirs = (r["pai_prefect"] - r["pai_plain"]) / STEPS_PER_RUN
        n = r["retries"]
        lines.append(
            f"| {db} | {ms(step)} | {ms(ours)} | {ms(theirs)} | {ours / theirs:.2f}x | {ours / step:.2f}x | "
            f"{ms(r['perdure_prefect'])}, {ms(r['pai_prefect'])} | {ms(r['cpu']['perdure_prefect'])}, "
            f"{ms(r['cpu']['pai_prefect'])} | {n['perdure_prefect']}, {n['pai_prefect']}, "
            f"{n['wf_steps'] + n['wf_empty']} |"
        )
        cpu = r["cpu"]
        cpu_ours = (cpu["perdure_prefect"] - cpu["perdure_plain"]) / STEPS_PER_RUN
        cpu_theirs = (cpu["pai_prefect"] - cpu["pai_plain"]) / STEPS_PER_RUN
        cpu_step = (cpu["wf_steps"] - cpu["wf_empty"]) / STEPS_PER_RUN
        notes.append(
            f"- {db}: per step in CPU time of this process (the server excluded), (durable - plain) / 11: perdure "
            f"{ms(cpu_ours)}, pydantic-ai {ms(cpu_theirs)} ({cpu_ours / cpu_theirs:.2f}x), one trivial task "
            f"{ms(cpu_step)}; plain runs (no Prefect) perdure {ms(r['perdure_plain'])}, pydantic-ai "
            f"{ms(r['pai_plain'])}; "
            f"{CONCURRENT} concurrent runs in one process: perdure {r['perdure_conc']:.2f} runs/s "
            f"({len(r['perdure_conc_failures'])} failed, {r['perdure_conc_retries']} requests retried after a "
            f"503), pydantic-ai {r['pai_conc']:.2f} runs/s ({len(r['pai_conc_failures'])} failed, "
            f"{r['pai_conc_retries']} retried)."
        )
        for key, label in (("perdure_conc_failures", "perdure"), ("pai_conc_failures", "pydantic-ai")):
            notes += [f"  - {label} failure: `{error}`" for error in r[key][:3]]
    if pg is None:
        lines.append("| PostgreSQL | not measured: no server at 127.0.0.1:5432 (or no asyncpg) | | | | | | | |")
    lines += ["", *notes, "", "Goal: perdure per step <= pydantic-ai's.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main()
    else:
        print(run())
