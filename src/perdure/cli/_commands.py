"""What each command does: through the ``RunAdmin`` port for runs (any engine), through a durable agent's public
methods where a command executes runs (``runs resume``, ``worker``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._exceptions import PerdureError, UserError
from ..runs import FINAL_STATUSES, RunInfo
from . import _render as render
from ._engines import Where, open_admin, translate_errors
from ._parse import parse, parse_duration

__all__ = ["entry", "main"]


def _escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console(*, stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)  # a long line stays one line (grep, logs)


def _uses_temporal(engine: str) -> None:
    global _EXIT_HARD
    if engine == "temporal":
        # A Temporal client's native runtime's threads can abort the interpreter while it finalizes
        # (temporalio/sdk-python#300): the command exits without finalizing instead.
        _EXIT_HARD = True


def _run(where: Where, go: Callable[[], Awaitable[int]]) -> int:
    _uses_temporal(where.admin.engine)

    async def opened() -> int:
        # An engine's admin may hold connections (a DBOS client, an HTTP client): opened and closed around the
        # command, in its event loop.
        async with contextlib.AsyncExitStack() as stack:
            admin: Any = where.admin
            if hasattr(admin, "__aenter__"):
                await stack.enter_async_context(admin)
            elif hasattr(admin, "__enter__"):
                stack.enter_context(admin)
            return await go()

    with translate_errors(where):
        return asyncio.run(opened())


async def _get(where: Where, run_id: str) -> RunInfo:
    info = await where.admin.get_run(run_id)
    if info is None:
        raise UserError(f"no run {run_id!r} in {where.label}")
    return info


# --- runs list | show | cancel | prune, approve: the RunAdmin port ----------------------------------------------


def _runs_list(args: argparse.Namespace) -> int:
    stuck_for = parse_duration(args.stuck) if args.stuck else None
    where = open_admin(args)

    async def go() -> int:
        if stuck_for is not None:
            infos = await where.admin.stuck(stuck_for)
            infos = [i for i in infos if (not args.status or i.status == args.status)]
            infos = [i for i in infos if args.agent is None or i.agent == args.agent][: args.limit]
        else:
            infos = await where.admin.list_runs(
                agent=args.agent, status=[args.status] if args.status else None, limit=args.limit
            )
        if args.json:
            render.print_json([i.to_json() for i in infos])
        else:
            title = f"runs in {where.label}" + (f" stuck for {args.stuck}" if args.stuck else "")
            _console().print(render.render_list(infos, title))
        return 0

    return _run(where, go)


def _runs_show(args: argparse.Namespace) -> int:
    where = open_admin(args)

    async def go() -> int:
        info = await _get(where, args.run_id)
        if args.json:
            render.print_json(info.to_json())
        else:
            render.render_run(info, _console(), messages=args.messages)
        return 0

    return _run(where, go)


def _runs_cancel(args: argparse.Namespace) -> int:
    where = open_admin(args)

    async def go() -> int:
        await where.admin.cancel(args.run_id)
        info = await _get(where, args.run_id)
        if args.json:
            render.print_json(info.to_json())
        else:
            stops = " (stops at its next step)" if info.status == "running" else ""
            print(f"run {args.run_id}: {info.status}{stops}")
        return 0

    return _run(where, go)


def _runs_prune(args: argparse.Namespace) -> int:
    older_than = parse_duration(args.older_than)
    where = open_admin(args)

    async def go() -> int:
        # The port's prune answers how many; the ids are what the finished runs' records say before it.
        cutoff = time.time() - older_than
        finished = await where.admin.list_runs(status=list(FINAL_STATUSES), limit=None)
        ids = [i.run_id for i in finished if i.finished_at is not None and i.finished_at < cutoff]
        count = len(ids) if args.dry_run else await where.admin.prune(older_than)
        if args.json:
            render.print_json(ids)
        else:
            verb = "would prune" if args.dry_run else "pruned"
            print(f"{verb} {count} finished run(s) older than {args.older_than}")
        return 0

    return _run(where, go)


def _approve(args: argparse.Namespace) -> int:
    where = open_admin(args)
    approved = not args.deny

    async def go() -> int:
        pending = await where.admin.pending(args.run_id)
        if not any(p.tool_call_id == args.call_id for p in pending):
            await _decided_already(where, args.run_id, args.call_id)
        await where.admin.decide(args.run_id, args.call_id, approved=approved, note=render.with_by(args.note, args.by))
        if args.json:
            render.print_json((await _get(where, args.run_id)).to_json())
        else:
            print(
                f"run {args.run_id}: call {args.call_id} {'approved' if approved else 'denied'}; {where.after_decide}"
            )
        return 0

    return _run(where, go)


async def _decided_already(where: Where, run_id: str, call_id: str) -> None:
    """A call with no decision due that was decided before: say so (and how), instead of "no call waiting"."""
    info = await where.admin.get_run(run_id)
    if info is None:
        return  # the engine's decide says there is no such run
    for decided, d in render.decisions(info):
        if decided == call_id:
            how = "approved" if d["approved"] else "denied"
            by = f" by {d['by']}" if d["by"] else ""
            at = f" at {render.when(d['at'])}" if d["at"] else ""
            note = f" (note {d['note']!r})" if d["note"] else ""
            raise UserError(f"call {call_id!r} of run {run_id!r} is already {how}{by}{at}{note}; nothing was changed")


# --- runs resume, worker: a durable agent's public methods --------------------------------------------------------


def _load_agent(spec: str, journal: str, *, given: bool = True) -> Any:
    """``module:attr`` naming an Agent or a durable agent (an Agent is wrapped in a DurableAgent on ``journal``).

    A DurableAgent keeps its own journal; an explicit ``--journal`` naming another file is an error, never ignored.
    """
    from .._agent import Agent
    from ..durable.base import DurableAgentBase
    from ..local import DurableAgent

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
    if isinstance(obj, DurableAgentBase):
        return obj
    if isinstance(obj, Agent):
        return DurableAgent(obj, journal=journal)
    raise UserError(f"{spec} is a {type(obj).__name__}, not an Agent or a durable agent")


def _step_line(run_id: str, step: Any) -> str:
    what = "[red]failed[/]" if render.failed(step) else step.status
    took = "" if step.duration is None else f" in {step.duration * 1000:.0f} ms"
    return f"[dim]{_escape(run_id)}[/] {_escape(step.key)} {what}{took}"


class _RunProgress:
    """Prints each step of one run as its engine records it (through the agent's public ``get_run``)."""

    def __init__(self, durable: Any, run_id: str, console: Any) -> None:
        self.durable, self.run_id, self.console = durable, run_id, console
        self.seen: set[tuple[str, str]] = set()

    async def poll(self) -> None:
        try:
            info = await self.durable.get_run(self.run_id)
        except Exception:  # progress is best effort: never the reason a resume fails
            return
        for step in info.steps if info is not None else []:
            if (step.key, step.status) not in self.seen:
                self.seen.add((step.key, step.status))
                self.console.print(_step_line(self.run_id, step), highlight=False)

    async def follow(self, interval: float = 0.2) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(interval)


def _resume_hint(args: argparse.Namespace) -> str:
    journal = f" --journal {args.journal}" if args.journal_given else ""
    return f"interrupted: resume with `perdure runs resume {args.run_id} --agent {args.agent}{journal}`"


def _resume(args: argparse.Namespace) -> int:
    import json

    from .._exceptions import RunWaiting

    durable = _load_agent(args.agent, args.journal, given=args.journal_given)
    from ._workers import engine_of

    _uses_temporal(engine_of(durable))
    console = _console(stderr=True)

    async def go() -> Any:
        from ._workers import executing

        async with executing(durable):
            progress = _RunProgress(durable, args.run_id, console)
            watcher = asyncio.create_task(progress.follow())
            try:
                return await durable.resume(args.run_id)
            finally:
                watcher.cancel()
                await progress.poll()  # the steps recorded since the last look

    console.print(f"resuming run {args.run_id} (agent {durable.name})", highlight=False, markup=False)
    try:
        result = asyncio.run(go())
    except RunWaiting as e:
        print(f"run {args.run_id} is waiting for a decision: " + ", ".join(p["tool_call_id"] for p in e.pending))
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(_resume_hint(args) + "\n")
        return 130
    print(json.dumps(getattr(result.output, "model_dump", lambda: result.output)(), default=str))
    return 0


class _AgentProgress:
    """Prints each run of an agent whose status changes while a worker serves (through ``list_runs``)."""

    def __init__(self, durable: Any, console: Any) -> None:
        self.durable, self.console = durable, console
        self.status: dict[str, str] | None = None
        self.handed_back: list[str] = []
        """Runs this worker was executing when it stopped (running, then pending again)."""

    async def poll(self) -> None:
        try:
            infos = await self.durable.list_runs(limit=100)
        except Exception:  # progress is best effort: never the reason a worker stops
            return
        first, self.status = self.status is None, self.status or {}
        for info in reversed(infos):
            before = self.status.get(info.run_id)
            if before == info.status:
                continue
            self.status[info.run_id] = info.status
            if before == "running" and info.status == "pending":
                self.handed_back.append(info.run_id)
            if first and info.status in FINAL_STATUSES:
                continue  # finished before this worker started: not its news
            color = render.COLORS.get(info.status, "white")
            error = f": {info.error.get('message')}" if info.error else ""
            self.console.print(f"run {_escape(info.run_id)} [{color}]{info.status}[/]{_escape(error)}", highlight=False)

    async def follow(self, interval: float = 0.5) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(interval)


def _worker(args: argparse.Namespace) -> int:
    from ._workers import engine_of, serve

    durable = _load_agent(args.agent, args.journal, given=args.journal_given)
    engine = engine_of(durable)
    _uses_temporal(engine)
    where = f"journal {durable.journal_path}" if engine == "embedded" else f"engine {engine}"
    print(f"perdure worker: agent {durable.name}, {where}, concurrency {args.concurrency}", flush=True)
    console = _console(stderr=True)

    async def run(progress: _AgentProgress) -> None:
        # SIGTERM (docker stop, systemd, Kubernetes) stops the worker as Ctrl-C does: the runs in flight are handed
        # back (status pending) for the next worker at once, instead of being left to wait out their lease.
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await progress.poll()
        watcher = asyncio.create_task(progress.follow())
        try:
            await serve(durable, concurrency=args.concurrency)
        finally:
            watcher.cancel()
            await progress.poll()  # how the runs in hand were left

    progress = _AgentProgress(durable, console)
    try:
        asyncio.run(run(progress))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if engine != "embedded":
            console.print("worker stopped", highlight=False)
            return 0
        asyncio.run(progress.poll())  # the runs it held, as they were handed back
        console.print("worker stopped: the runs it held are pending again, for the next worker", highlight=False)
        journal = f" --journal {args.journal}" if args.journal_given else ""
        for run_id in progress.handed_back:
            console.print(
                f"interrupted: resume with `perdure runs resume {run_id} --agent {args.agent}{journal}`",
                highlight=False,
                markup=False,
            )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as demo_main

    return demo_main(model=args.model, journal=args.journal, keep=args.keep)


COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("demo", None): _demo,
    ("runs", "list"): _runs_list,
    ("runs", "show"): _runs_show,
    ("runs", "resume"): _resume,
    ("runs", "cancel"): _runs_cancel,
    ("runs", "prune"): _runs_prune,
    ("approve", None): _approve,
    ("worker", None): _worker,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse(argv)
    if args.command is None:  # bare `perdure`: what it can do
        parser.print_help()
        return 0
    if args.command == "runs" and args.runs_command is None:
        runs = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
        runs.choices["runs"].print_help()  # type: ignore[index]
        return 0
    command = COMMANDS[(args.command, getattr(args, "runs_command", None))]
    try:
        return command(args)
    except PerdureError as e:
        sys.stderr.write(f"perdure: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("perdure: interrupted\n")
        return 130


_EXIT_HARD = False


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # `perdure runs list | head`: the reader is gone, which is no error. Python would complain again while
        # flushing stdout at exit: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if _EXIT_HARD:
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
