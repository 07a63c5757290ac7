"""The ``perdure`` command: demo, runs list|show|resume|cancel|prune, approve, worker.

Human output uses rich; every listing takes ``--json`` for scripts. ``--journal`` defaults like the API
(``$PERDURE_JOURNAL`` or ``perdure.db``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._exceptions import PerdureError, UserError

__all__ = ["main"]


def _journal_default() -> str:
    return os.environ.get("PERDURE_JOURNAL") or "perdure.db"


def _open(path: str) -> Any:
    from .local._journal import Journal

    if not Path(path).exists():
        raise UserError(f"no journal at {path}; pass --journal PATH or set PERDURE_JOURNAL")
    return Journal(path)


def _load_agent(spec: str, journal: str, *, given: bool = True) -> Any:
    """``module:attr`` naming an Agent or a DurableAgent (an Agent is wrapped in a DurableAgent on ``journal``).

    A DurableAgent keeps its own journal; an explicit ``--journal`` naming another file is an error, never ignored.
    """
    from ._agent import Agent
    from .local import DurableAgent

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"--agent/worker takes module:attribute (e.g. myapp.agents:support), not {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"cannot import {module_name!r} ({e}); run from your project's directory") from e
    obj = getattr(module, attr, None)
    if obj is None:
        raise UserError(f"module {module_name!r} has no attribute {attr!r}")
    if isinstance(obj, DurableAgent):
        if given and os.path.realpath(obj.journal_path) != os.path.realpath(journal):
            raise UserError(
                f"{spec} is a DurableAgent on the journal {obj.journal_path}, but --journal says {journal}; "
                f"drop --journal to use the DurableAgent's own, or point {spec} at the same file"
            )
        return obj
    if isinstance(obj, Agent):
        return DurableAgent(obj, journal=journal)
    raise UserError(f"{spec} is a {type(obj).__name__}, not an Agent or a DurableAgent")


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


class _Backend:
    """Where runs live: the embedded journal, or a DBOS system database (``--dbos URL``)."""

    where: str

    def runs(self, status: str | None, agent: str | None, limit: int) -> list[Any]:
        raise NotImplementedError

    def stuck(self, seconds: float, agent: str | None) -> list[Any]:
        raise NotImplementedError

    def show(self, run_id: str) -> Any:
        raise NotImplementedError

    def cancel(self, run_id: str) -> None:
        raise NotImplementedError

    def approve(self, run_id: str, call_id: str, approved: bool, note: str | None) -> None:
        raise NotImplementedError


class _LocalBackend(_Backend):
    def __init__(self, path: str) -> None:
        self.journal = _open(path)
        self.where = path

    def runs(self, status: str | None, agent: str | None, limit: int) -> list[Any]:
        from .local._info import run_info_from_row

        rows = self.journal.list_runs(agent=agent, statuses=[status] if status else None, limit=limit)
        return [run_info_from_row(self.journal, r, with_steps=False) for r in rows]

    def stuck(self, seconds: float, agent: str | None) -> list[Any]:
        from .local._stuck import stuck_runs

        return stuck_runs(self.journal, seconds, agent=agent)

    def show(self, run_id: str) -> Any:
        from .local._admin import LocalAdmin

        info = LocalAdmin(self.journal).get_run_now(run_id)
        if info is None:
            raise UserError(f"no run {run_id!r} in {self.where}")
        return info

    def cancel(self, run_id: str) -> None:
        from .local._admin import request_cancel

        request_cancel(self.journal, run_id)

    def approve(self, run_id: str, call_id: str, approved: bool, note: str | None) -> None:
        from .local._admin import decide

        decide(self.journal, run_id, call_id, approved=approved, note=note)


class _DBOSBackend(_Backend):
    """Runs of ``DBOSAgent``s, read and operated through DBOS's client: no agent, no launched DBOS needed."""

    def __init__(self, url: str) -> None:
        try:
            from .dbos import _admin
        except ImportError as e:
            raise UserError(f'--dbos needs the dbos extra: pip install "perdure[dbos]" ({e})') from e
        self.admin = _admin
        self.url = url
        self.where = f"DBOS {url}"

    def runs(self, status: str | None, agent: str | None, limit: int) -> list[Any]:
        from .runs import RunInfo

        return [RunInfo.from_json(d) for d in self.admin.list_runs(self.url, status, limit, agent=agent)]

    def stuck(self, seconds: float, agent: str | None) -> list[Any]:
        # DBOS keeps no lease: a run is stuck when it is running and no step started or finished in the window.
        cutoff = time.time() - seconds
        out = []
        for info in self.runs("running", agent, 10_000):
            full = self.show(info.run_id)
            marks = [m for s in full.steps for m in (s.started_at, s.finished_at) if m is not None]
            if max(marks, default=full.updated_at or full.created_at) < cutoff:
                out.append(full)
        return out

    def show(self, run_id: str) -> Any:
        from .runs import RunInfo

        return RunInfo.from_json(self.admin.get_run(self.url, run_id))

    def cancel(self, run_id: str) -> None:
        self.admin.cancel(self.url, run_id)

    def approve(self, run_id: str, call_id: str, approved: bool, note: str | None) -> None:
        self.admin.approve(self.url, run_id, call_id, approved, note)


class _TemporalBackend(_Backend):
    """Runs of ``TemporalAgent``s on a Temporal namespace, through a client alone: no agent code, no worker.

    ``runs show`` asks the run's workflow for its steps (a query, answered by a worker of the agent); with no
    worker it shows what the server alone knows. ``approve`` is a workflow update: a worker applies it.
    """

    APPROVE_TIMEOUT = 30.0

    def __init__(self, address: str, namespace: str) -> None:
        try:
            from .temporal import _agent as admin
        except ImportError as e:
            raise UserError(f'--temporal needs the temporal extra: pip install "perdure[temporal]" ({e})') from e
        self.admin = admin
        self.address = address
        self.namespace = namespace
        self.where = f"Temporal {address} (namespace {namespace})"

    def _call(self, fn: Any) -> Any:
        from temporalio.client import Client

        global _EXIT_HARD
        _EXIT_HARD = True

        async def go() -> Any:
            try:
                client = await Client.connect(self.address, namespace=self.namespace)
            except Exception as e:
                raise UserError(f"cannot reach Temporal at {self.address}: {e}") from e
            return await fn(client)

        return asyncio.run(go())

    def _workflow_name(self, agent: str | None) -> str | None:
        return None if agent is None else f"{self.admin.WORKFLOW_PREFIX}{agent}"

    def runs(self, status: str | None, agent: str | None, limit: int) -> list[Any]:
        if status == "pending":
            return []  # a started workflow is running: Temporal has no pending runs
        return self._call(  # type: ignore[no-any-return]
            lambda c: self.admin.list_run_infos(c, status=status, limit=limit, workflow_name=self._workflow_name(agent))
        )

    def stuck(self, seconds: float, agent: str | None) -> list[Any]:
        return self._call(  # type: ignore[no-any-return]
            lambda c: self.admin.stuck_run_infos(c, seconds, workflow_name=self._workflow_name(agent))
        )

    def show(self, run_id: str) -> Any:
        return self._call(lambda c: self.admin.run_info(c, run_id, deadlines=self.admin.CLI_QUERY_DEADLINES))

    def cancel(self, run_id: str) -> None:
        self._call(lambda c: self.admin.cancel_run(c, run_id))

    def approve(self, run_id: str, call_id: str, approved: bool, note: str | None) -> None:
        self._call(
            lambda c: self.admin.approve_run(
                c, run_id, call_id, approved=approved, note=note, timeout=self.APPROVE_TIMEOUT
            )
        )


class _PrefectBackend(_Backend):
    """Runs of ``PrefectAgent``s on a Prefect server, read through Prefect's API alone (list and show).

    Read-only: deciding on a call resumes the suspended flow run with every decision as its run input, and
    cancelling depends on whether a live process executes the run; that logic is the adapter's, which needs the
    agent. Use ``PrefectAgent.approve``/``cancel`` (or Prefect's UI) for those. Step descriptions and token
    counts live in the agent's result storage, which the CLI does not know: steps show their keys and times.
    """

    def __init__(self, url: str) -> None:
        # Prefect reads its settings when it is imported: point it at the server first.
        os.environ["PREFECT_API_URL"] = url
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        try:
            from .prefect import _agent as adapter
        except ImportError as e:
            raise UserError(f'--prefect needs the prefect extra: pip install "perdure[prefect]" ({e})') from e
        self.adapter = adapter
        self.url = url
        self.where = f"Prefect {url}"

    def _call(self, fn: Any) -> Any:
        from prefect.client.orchestration import get_client

        async def go() -> Any:
            async with get_client() as client:
                return await fn(client)

        return asyncio.run(go())

    async def _flow_runs(self, client: Any, *, run_id: str | None, states: list[Any] | None, limit: int) -> list[Any]:
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowRunFilter,
            FlowRunFilterIdempotencyKey,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.sorting import FlowRunSort

        from .prefect import _names as names

        flow_runs: list[Any] = []
        while len(flow_runs) < limit:  # the API pages at 200
            page = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[names.TAG]),
                    idempotency_key=FlowRunFilterIdempotencyKey(any_=[run_id]) if run_id is not None else None,
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)) if states else None,
                ),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[names.DEPLOYMENT])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=min(200, limit - len(flow_runs)),
                offset=len(flow_runs),
            )
            flow_runs.extend(page)
            if len(page) < 200:
                break
        return [fr for fr in flow_runs if fr.idempotency_key]

    async def _input(self, client: Any, flow_run: Any, key: str) -> Any:
        from prefect.exceptions import ObjectNotFound

        try:
            return json.loads(await client.read_flow_run_input(flow_run.id, key=key))
        except ObjectNotFound:
            return None

    async def _pending(self, client: Any, flow_run: Any) -> list[Any]:
        """The calls a suspended run waits for that nobody has decided yet (run inputs the adapter writes)."""
        from prefect.client.schemas.objects import StateType

        from .local import PendingDecision
        from .prefect import _names as names

        state = flow_run.state
        if state is None or state.type != StateType.PAUSED or not state.state_details.pause_key:
            return []
        pause = state.state_details.pause_key
        calls = await self._input(client, flow_run, names.pending_input(pause)) or []
        decided: set[int] = set()
        if len(calls) > 1:
            prefix = names.decision_input(pause, 0)[:-1]
            items = await client.filter_flow_run_input(
                flow_run.id, key_prefix=prefix, limit=len(calls) + 1, exclude_keys=set()
            )
            decided = {int(item.key[len(prefix) :]) for item in items}
        run_id = str(flow_run.idempotency_key)
        return [
            PendingDecision(run_id, c["tool_call_id"], c["tool_name"], c["args"], c["reason"], c["key"], c["since"])
            for i, c in enumerate(calls)
            if i not in decided
        ]

    async def _steps(self, client: Any, flow_run: Any) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import TaskRunSort

        from ._ops import step_kind
        from .local import StepInfo

        task_runs: list[Any] = []
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
                offset=len(task_runs),
            )
            task_runs.extend(page)
            if len(page) < 200:
                break
        chosen: dict[str, Any] = {}
        for task_run in task_runs:  # an executed step wins over its later cache hits
            earlier = chosen.get(task_run.name)
            if earlier is None or (earlier.state_name == "Cached" and task_run.state_name != "Cached"):
                chosen[task_run.name] = task_run
        stamp = self.adapter._timestamp
        return [
            StepInfo(
                key,
                step_kind(key),
                {StateType.COMPLETED: "done", StateType.RUNNING: "started"}.get(t.state_type, "failed"),
                max(1, t.flow_run_run_count),
                stamp(t.start_time) or stamp(t.expected_start_time) or 0.0,
                stamp(t.end_time),
                0,
                0,
                "",
            )
            for key, t in chosen.items()
        ]

    async def _info(self, client: Any, flow_run: Any, *, with_steps: bool) -> Any:
        from .local import RunInfo
        from .prefect import _names as names
        from .usage import Usage

        status = self.adapter._status(flow_run)
        outcome = (
            await self._input(client, flow_run, names.OUTCOME_INPUT)
            if status in ("completed", "failed", "cancelled")
            else None
        ) or {}
        context = (flow_run.context or {}).get("perdure", {})
        stamp = self.adapter._timestamp
        return RunInfo(
            run_id=str(flow_run.idempotency_key),
            agent=str(context.get("agent", "")),
            status=status,
            prompt=(flow_run.parameters or {}).get("prompt"),
            attempts=flow_run.run_count,
            created_at=stamp(flow_run.created) or 0.0,
            updated_at=max(stamp(flow_run.updated) or 0.0, stamp(getattr(flow_run.state, "timestamp", None)) or 0.0),
            finished_at=stamp(flow_run.end_time) if status in ("completed", "failed", "cancelled") else None,
            owner=self.adapter._owner(flow_run) if status == "running" else None,
            lease_expires=None,
            fingerprint=str(context.get("fingerprint", "")),
            usage=Usage(**outcome["usage"]) if outcome.get("usage") else Usage(),
            output=outcome.get("output"),
            error=outcome.get("error"),
            steps=await self._steps(client, flow_run) if with_steps else [],
            pending=await self._pending(client, flow_run),
            trace_context=context.get("trace_context"),
        )

    def runs(self, status: str | None, agent: str | None, limit: int) -> list[Any]:
        states = self.adapter._STATE_TYPES.get(status) if status else None

        async def go(client: Any) -> list[Any]:
            flow_runs = await self._flow_runs(client, run_id=None, states=states, limit=limit)
            infos = [await self._info(client, fr, with_steps=False) for fr in flow_runs]
            return [i for i in infos if (status is None or i.status == status) and (agent is None or i.agent == agent)]

        return self._call(go)  # type: ignore[no-any-return]

    def stuck(self, seconds: float, agent: str | None) -> list[Any]:
        """Executing runs whose process is gone (on this machine), or with no step started or finished (and no
        state change) for ``seconds``; and scheduled runs nobody picked up for that long."""
        import dataclasses

        cutoff = time.time() - seconds
        kinds = [*self.adapter._STATE_TYPES["running"], *self.adapter._STATE_TYPES["pending"]]

        async def go(client: Any) -> list[Any]:
            out = []
            for flow_run in await self._flow_runs(client, run_id=None, states=kinds, limit=10_000):
                info = await self._info(client, flow_run, with_steps=True)
                if agent is not None and info.agent != agent:
                    continue
                marks = [m for s in info.steps for m in (s.started_at, s.finished_at) if m is not None]
                last = max([*marks, info.updated_at])
                if self.adapter._orphaned(flow_run) or last < cutoff:
                    out.append(dataclasses.replace(info, updated_at=last))
            return out

        return self._call(go)  # type: ignore[no-any-return]

    def show(self, run_id: str) -> Any:
        async def go(client: Any) -> Any:
            flow_runs = await self._flow_runs(client, run_id=run_id, states=None, limit=1)
            if not flow_runs:
                raise UserError(f"no run {run_id!r} on the Prefect server {self.url}")
            return await self._info(client, flow_runs[0], with_steps=True)

        return self._call(go)

    def cancel(self, run_id: str) -> None:
        raise UserError(
            "perdure runs cancel does not operate Prefect runs (only list and show them): cancel with "
            "PrefectAgent.cancel(run_id) in your application, or in Prefect's UI"
        )

    def approve(self, run_id: str, call_id: str, approved: bool, note: str | None) -> None:
        raise UserError(
            "perdure approve does not operate Prefect runs (only list and show them): decide with "
            "PrefectAgent.approve(run_id, call_id) in your application, or in the suspended flow run's form in "
            "Prefect's UI"
        )


def _backend(args: argparse.Namespace) -> _Backend:
    chosen = [
        name
        for name, value in (
            ("--journal", getattr(args, "journal_given", False)),
            ("--dbos", getattr(args, "dbos", None)),
            ("--temporal", getattr(args, "temporal", None)),
            ("--prefect", getattr(args, "prefect", None)),
        )
        if value
    ]
    if len(chosen) > 1:
        raise UserError(f"give one of {', '.join(chosen)}, not several")
    if getattr(args, "dbos", None):
        return _DBOSBackend(args.dbos)
    if getattr(args, "temporal", None):
        return _TemporalBackend(args.temporal, args.namespace)
    if getattr(args, "prefect", None):
        return _PrefectBackend(args.prefect)
    return _LocalBackend(args.journal)


def _runs_list(args: argparse.Namespace) -> int:
    from .local._admin import parse_duration

    backend = _backend(args)
    if args.stuck:
        infos = backend.stuck(parse_duration(args.stuck), args.agent)
        if args.status:
            infos = [i for i in infos if i.status == args.status]
    else:
        infos = backend.runs(args.status, args.agent, args.limit)
    if args.agent:
        infos = [i for i in infos if i.agent == args.agent]
    if args.json:
        _print_json([i.to_json() for i in infos])
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runs in {backend.where}" + (f" stuck for {args.stuck}" if args.stuck else ""))
    for col in ("run id", "agent", "status", "attempts", "created", "updated", "error"):
        table.add_column(col)
    colors = {
        "completed": "green",
        "failed": "red",
        "cancelled": "magenta",
        "waiting": "yellow",
        "running": "cyan",
    }
    for i in infos:
        error = (i.error or {}).get("message", "")
        table.add_row(
            i.run_id,
            i.agent,
            f"[{colors.get(i.status, 'white')}]{i.status}[/]",
            str(i.attempts),
            _when(i.created_at),
            _when(i.updated_at),
            error[:60],
        )
    Console().print(table)
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from ._demo import render_timeline

    info = _backend(args).show(args.run_id)
    if args.json:
        _print_json(info.to_json())
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{info.run_id}[/] — agent {info.agent}, [bold]{info.status}[/], {info.attempts} attempt(s)")
    console.print(f"prompt: {info.prompt!r}")
    u = info.usage
    console.print(
        f"usage: {u.requests} requests, {u.input_tokens} in / {u.output_tokens} out tokens, {u.tool_calls} tool calls"
    )
    console.print(render_timeline(info))
    for p in info.pending:
        console.print(
            f"[yellow]waiting[/] for a decision on {p.tool_name}({json.dumps(p.args)}) — "
            f"perdure approve {info.run_id} {p.tool_call_id} [--deny --note ...]"
        )
    if info.error:
        console.print(f"[red]error:[/] {info.error.get('message')}")
    if info.output is not None:
        console.print(f"output: {json.dumps(info.output)}")
    return 0


def _runs_cancel(args: argparse.Namespace) -> int:
    backend = _backend(args)
    backend.cancel(args.run_id)
    info = backend.show(args.run_id)
    print(f"run {args.run_id}: {info.status}" + (" (stops at its next step)" if info.status == "running" else ""))
    return 0


def _runs_prune(args: argparse.Namespace) -> int:
    from .local._admin import parse_duration, prune

    ids = prune(_open(args.journal), parse_duration(args.older_than), dry_run=args.dry_run)
    if args.json:
        _print_json(ids)
    else:
        print(f"{'would prune' if args.dry_run else 'pruned'} {len(ids)} finished run(s) older than {args.older_than}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from ._exceptions import RunWaiting

    durable = _load_agent(args.agent, args.journal, given=args.journal_given)
    try:
        result = durable.resume_sync(args.run_id)
    except RunWaiting as e:
        print(f"run {args.run_id} is waiting for a decision: " + ", ".join(p["tool_call_id"] for p in e.pending))
        return 0
    print(json.dumps(getattr(result.output, "model_dump", lambda: result.output)(), default=str))
    return 0


def _approve(args: argparse.Namespace) -> int:
    backend = _backend(args)
    backend.approve(args.run_id, args.call_id, not args.deny, args.note)
    if isinstance(backend, _DBOSBackend):
        then = "the run continues in a process with DBOS launched"
    elif isinstance(backend, _TemporalBackend):
        then = "the run's workflow continues on its workers"
    else:
        then = "a worker or `perdure runs resume` continues the run"
    print(f"run {args.run_id}: call {args.call_id} {'denied' if args.deny else 'approved'}; {then}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    durable = _load_agent(args.agent, args.journal, given=args.journal_given)
    print(f"perdure worker: agent {durable.name}, journal {durable.journal_path}, concurrency {args.concurrency}")

    async def serve() -> None:
        # SIGTERM (docker stop, systemd, Kubernetes) stops the worker as Ctrl-C does: the runs in flight are handed
        # back (status pending) for the next worker at once, instead of being left to wait out their lease.
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await durable.serve(concurrency=args.concurrency)

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as demo_main

    return demo_main(model=args.model, journal=args.journal, keep=args.keep)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perdure", description="Durable AI agents: inspect and operate runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    def journal_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--journal",
            default=None,  # resolved in main(), which remembers whether it was given
            help="journal file (default: $PERDURE_JOURNAL or perdure.db; a DurableAgent's own for module:attr)",
        )

    def store_opts(p: argparse.ArgumentParser) -> None:
        journal_opt(p)
        p.add_argument(
            "--dbos",
            metavar="URL",
            default=os.environ.get("PERDURE_DBOS_URL"),
            help="operate DBOSAgent runs in this DBOS system database (postgresql://... or sqlite:///...) "
            "instead of a journal (default: $PERDURE_DBOS_URL)",
        )
        p.add_argument(
            "--temporal",
            metavar="ADDRESS",
            default=os.environ.get("PERDURE_TEMPORAL_ADDRESS"),
            help="operate TemporalAgent runs on this Temporal server, e.g. localhost:7233 "
            "(default: $PERDURE_TEMPORAL_ADDRESS)",
        )
        p.add_argument(
            "--namespace",
            default=os.environ.get("PERDURE_TEMPORAL_NAMESPACE", "default"),
            help="the Temporal namespace (default: $PERDURE_TEMPORAL_NAMESPACE or default)",
        )
        p.add_argument(
            "--prefect",
            metavar="URL",
            default=os.environ.get("PERDURE_PREFECT_URL"),
            help="list and show PrefectAgent runs on this Prefect server's API, e.g. http://127.0.0.1:4200/api "
            "(default: $PERDURE_PREFECT_URL)",
        )

    demo = sub.add_parser("demo", help="crash a run with SIGKILL mid-tool and recover it in a new process")
    demo.add_argument("--model", default=None, help="run against a real model, e.g. openai:gpt-4.1-mini")
    demo.add_argument("--journal", default=None, help="keep the journal at this path")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary directory")
    demo.set_defaults(fn=_demo)

    runs = sub.add_parser("runs", help="list, show, resume, cancel and prune runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    ls = runs_sub.add_parser("list", help="list runs, newest first")
    store_opts(ls)
    ls.add_argument("--status", choices=["pending", "running", "waiting", "completed", "failed", "cancelled"])
    ls.add_argument(
        "--stuck",
        metavar="DURATION",
        help="only runs whose owner is gone or that made no progress for DURATION (e.g. 10m)",
    )
    ls.add_argument("--agent", help="only runs of this agent")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=_runs_list)
    show = runs_sub.add_parser("show", help="one run: its step timeline, usage, decisions, error")
    store_opts(show)
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(fn=_runs_show)
    resume = runs_sub.add_parser("resume", help="resume a run in this process")
    journal_opt(resume)
    resume.add_argument("run_id")
    resume.add_argument("--agent", required=True, help="module:attr of the Agent or DurableAgent")
    resume.set_defaults(fn=_resume)
    cancel = runs_sub.add_parser("cancel", help="cancel a run; it stops at its next step")
    store_opts(cancel)
    cancel.add_argument("run_id")
    cancel.set_defaults(fn=_runs_cancel)
    prune_p = runs_sub.add_parser("prune", help="delete finished runs older than a duration")
    journal_opt(prune_p)
    prune_p.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d")
    prune_p.add_argument("--dry-run", action="store_true")
    prune_p.add_argument("--json", action="store_true")
    prune_p.set_defaults(fn=_runs_prune)

    approve = sub.add_parser("approve", help="approve (or --deny) a call waiting for a human")
    store_opts(approve)
    approve.add_argument("run_id")
    approve.add_argument("call_id")
    approve.add_argument("--deny", action="store_true")
    approve.add_argument("--note", default=None)
    approve.set_defaults(fn=_approve)

    worker = sub.add_parser("worker", help="execute started, decided and orphaned runs of an agent")
    journal_opt(worker)
    worker.add_argument("agent", help="module:attr of the Agent or DurableAgent")
    worker.add_argument("--concurrency", type=int, default=8)
    worker.set_defaults(fn=_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "demo":
        args.journal_given = args.journal is not None
        args.journal = args.journal or _journal_default()
    try:
        code: int = args.fn(args)
    except PerdureError as e:
        sys.stderr.write(f"perdure: {e}\n")
        return 2
    return code


# Set once a command has used a Temporal client: its native runtime's threads can abort the interpreter while it
# finalizes (temporalio/sdk-python#300), so the command exits without finalizing instead.
_EXIT_HARD = False


def entry() -> None:
    """Console-script entry point."""
    code = main()
    if _EXIT_HARD:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
