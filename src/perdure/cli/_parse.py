"""The command line: every command, option and help text (the CLI reference page is generated from them)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence

from .._exceptions import UserError

__all__ = ["build_parser", "parse", "parse_duration"]

STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"30d"``, ``"1w"`` (or a plain number of seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise UserError(f"cannot read {text!r} as a duration; write it like 90s, 10m, 2h, 30d or 1w")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _journal_default() -> str:
    return os.environ.get("PERDURE_JOURNAL") or "perdure.db"


def _version() -> str:
    from .. import __version__

    return f"perdure {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perdure", description="Durable AI agents: inspect and operate runs.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def journal_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--journal",
            default=None,  # resolved in parse(), which remembers whether it was given
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
            help="operate PrefectAgent runs on this Prefect server's API, e.g. http://127.0.0.1:4200/api "
            "(default: $PERDURE_PREFECT_URL)",
        )

    demo = sub.add_parser("demo", help="crash a run with SIGKILL mid-tool and recover it in a new process")
    demo.add_argument("--model", default=None, help="run against a real model, e.g. openai:gpt-4.1-mini")
    demo.add_argument("--journal", default=None, help="keep the journal at this path")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary directory")

    runs = sub.add_parser("runs", help="list, show, resume, cancel and prune runs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="COMMAND")
    ls = runs_sub.add_parser("list", help="list runs, newest first")
    store_opts(ls)
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument(
        "--stuck",
        metavar="DURATION",
        help="only runs whose owner is gone or that made no progress for DURATION (e.g. 10m)",
    )
    ls.add_argument("--agent", help="only runs of this agent")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    show = runs_sub.add_parser("show", help="one run: its step timeline, usage, decisions, error")
    store_opts(show)
    show.add_argument("run_id")
    show.add_argument(
        "--messages",
        action="store_true",
        help="also show the conversation: the model's responses, tool calls with their arguments and results",
    )
    show.add_argument("--json", action="store_true")
    resume = runs_sub.add_parser("resume", help="resume a run in this process")
    journal_opt(resume)
    resume.add_argument("run_id")
    resume.add_argument(
        "--agent",
        required=True,
        help="module:attr of the Agent or the durable agent (DurableAgent, DBOSAgent, TemporalAgent, PrefectAgent)",
    )
    cancel = runs_sub.add_parser("cancel", help="cancel a run; it stops at its next step")
    store_opts(cancel)
    cancel.add_argument("run_id")
    cancel.add_argument("--json", action="store_true", help="print the run's record after the request")
    prune = runs_sub.add_parser("prune", help="delete finished runs older than a duration")
    store_opts(prune)
    prune.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    prune.add_argument("--json", action="store_true")

    approve = sub.add_parser("approve", help="approve (or --deny) a call waiting for a human")
    store_opts(approve)
    approve.add_argument("run_id")
    approve.add_argument("call_id")
    approve.add_argument("--deny", action="store_true")
    approve.add_argument("--note", default=None, help="a note for the model (and for whoever reads the run)")
    approve.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="who decides, recorded with the decision's note and shown by `runs show`",
    )
    approve.add_argument("--json", action="store_true", help="print the run's record after the decision")

    worker = sub.add_parser("worker", help="execute started, decided and orphaned runs of an agent")
    journal_opt(worker)
    worker.add_argument(
        "agent",
        help="module:attr of the Agent or the durable agent (DurableAgent, DBOSAgent, TemporalAgent, PrefectAgent)",
    )
    worker.add_argument("--concurrency", type=int, default=8)
    return parser


def parse(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in (None, "demo") and hasattr(args, "journal"):
        args.journal_given = args.journal is not None
        args.journal = args.journal or _journal_default()
    return parser, args
