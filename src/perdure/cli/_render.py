"""How the CLI shows runs: rich tables and text for people, JSON for scripts. Pure functions of the run records
(``perdure.runs``): they never ask an engine anything."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Any

from ..runs import RunInfo, StepInfo

__all__ = [
    "BY",
    "decision_of",
    "decisions",
    "failed",
    "print_json",
    "render_list",
    "render_messages",
    "render_run",
    "render_timeline",
    "with_by",
]

COLORS = {"completed": "green", "failed": "red", "cancelled": "magenta", "waiting": "yellow", "running": "cyan"}

# Who decided travels inside the decision's note (the RunAdmin port, and every engine's record of a decision, hold
# an approved flag and a note): "refund already issued [by alice]", or "[by alice]" alone.
BY = re.compile(r"^(?:(?P<note>.*?)\s)?\[by (?P<by>[^\[\]]+)\]$", re.S)


def with_by(note: str | None, by: str | None) -> str | None:
    """The note to store for a decision made by ``by``."""
    if not by:
        return note
    return f"{note} [by {by}]" if note else f"[by {by}]"


def when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- step records ------------------------------------------------------------------------------------------------


def decision_of(step: StepInfo) -> dict[str, Any] | None:
    """A decided approval step's decision: ``approved``, ``note``, ``by`` (None when the engine gave no record)."""
    if step.kind != "approval" or not isinstance(step.result, dict) or "approved" not in step.result:
        return None
    note = step.result.get("note")
    by = None
    if isinstance(note, str) and (m := BY.match(note)):
        note, by = m.group("note"), m.group("by")
    return {"approved": bool(step.result["approved"]), "note": note, "by": by, "at": step.finished_at}


def decisions(info: RunInfo) -> list[tuple[str, dict[str, Any]]]:
    """``(tool_call_id, decision)`` for every decided call of the run."""
    out = []
    for s in info.steps:
        d = decision_of(s)
        if d is not None:
            out.append((s.key.rsplit("/", 1)[-1], d))
    return out


def failed(step: StepInfo) -> bool:
    """A step that failed: so marked by its engine, or a tool call whose recorded outcome is an error."""
    return step.status == "failed" or (isinstance(step.result, dict) and step.result.get("kind") == "error")


def _turn(key: str) -> int:
    parts = key.split("/")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "turn" and parts[1].isdigit() else 0


def _failed_model_step(info: RunInfo) -> str | None:
    """The key of the model request a failed run died in: engines record only the steps that produced a result, so
    a model call that raised is not among the steps."""
    if info.status != "failed" or any(failed(s) for s in info.steps):
        return None
    kind = str((info.error or {}).get("type", ""))
    if not (kind.startswith("Model") or kind in ("UnexpectedModelBehavior", "UsageLimitExceeded")):
        return None
    turns = [_turn(s.key) for s in info.steps]
    last = max(turns, default=0)
    ended_on_model = any(s.key == f"turn/{last}/model" for s in info.steps) and all(
        s.kind == "model" for s in info.steps if _turn(s.key) == last
    )
    return f"turn/{last if ended_on_model and last else last + 1}/model"


# --- rendering ---------------------------------------------------------------------------------------------------


def render_list(infos: list[RunInfo], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("run id", "agent", "status", "attempts", "created", "updated", "error"):
        table.add_column(col)
    for i in infos:
        error = str((i.error or {}).get("message", ""))
        table.add_row(
            i.run_id,
            i.agent,
            f"[{COLORS.get(i.status, 'white')}]{i.status}[/]",
            str(i.attempts),
            when(i.created_at),
            when(i.updated_at),
            error[:60],
        )
    return table


def render_timeline(info: RunInfo) -> Any:
    """A rich table: each step, the attempt that executed it, and the attempts that replayed it."""
    from rich.table import Table

    table = Table(title=f"run {info.run_id} — {info.status}, {info.attempts} attempt(s)")
    table.add_column("step")
    table.add_column("kind")
    table.add_column("duration", justify="right")
    table.add_column("tokens", justify="right")
    attempts = max(info.attempts, 1)
    for attempt in range(1, attempts + 1):
        table.add_column(f"attempt {attempt}")
    for s in info.steps:
        cells = []
        for attempt in range(1, attempts + 1):
            if attempt == s.attempt:
                if failed(s):
                    cells.append("[red]failed[/]")
                else:
                    cells.append("[green]executed[/]" if s.status == "done" else f"[yellow]{s.status}[/]")
            elif attempt > s.attempt and s.status == "done":
                cells.append("[dim]replayed[/]")
            else:
                cells.append("")
        duration = "" if s.duration is None else f"{s.duration * 1000:.1f} ms"
        tokens = f"{s.input_tokens}/{s.output_tokens}" if s.kind == "model" else ""
        table.add_row(s.key, s.kind, duration, tokens, *cells)
    model_key = _failed_model_step(info)
    if model_key is not None:
        cells = ["" for _ in range(attempts)]
        cells[-1] = "[red]failed[/]"
        table.add_row(model_key, "model", "", "", *cells)
    return table


def render_run(info: RunInfo, console: Any, *, messages: bool = False) -> None:
    """``runs show``: header, usage, timeline, decisions, pending calls, failures, the error or the output."""
    console.print(f"[bold]{info.run_id}[/] — agent {info.agent}, [bold]{info.status}[/], {info.attempts} attempt(s)")
    console.print(f"prompt: {info.prompt!r}")
    u = info.usage
    console.print(
        f"usage: {u.requests} requests, {u.input_tokens} in / {u.output_tokens} out tokens, {u.tool_calls} tool calls"
    )
    console.print(render_timeline(info))
    for call_id, d in decisions(info):
        verb = "[green]approved[/]" if d["approved"] else "[red]denied[/]"
        who = f" by {d['by']}" if d["by"] else ""
        at = f" at {when(d['at'])}" if d["at"] else ""
        note = f" — note: {d['note']!r}" if d["note"] else ""
        console.print(f"decision: call {call_id} {verb}{who}{at}{note}", highlight=False)
    for p in info.pending:
        console.print(
            f"[yellow]waiting[/] for a decision on {p.tool_name}({json.dumps(p.args)}) — "
            f"perdure approve {info.run_id} {p.tool_call_id} [--deny --note ...]",
            highlight=False,
        )
    failures = [s for s in info.steps if failed(s)]
    for s in failures:
        result = s.result if isinstance(s.result, dict) else {}
        if not result and s is failures[-1] and info.status == "failed" and info.error:
            result = info.error  # a failed model request records no result: the run ended with its error
        what = result.get("message") or "failed"
        kind = result.get("error_type") or result.get("type") or ""
        kind = f"{kind}: " if kind and not str(what).startswith(f"{kind}:") else ""
        console.print(f"[red]failed step[/] {s.key}: {kind}{what}", highlight=False)
        if result.get("traceback"):
            console.print(str(result["traceback"]), markup=False, highlight=False)
    if info.error:
        console.print(f"[red]error:[/] {info.error.get('message')}", highlight=False)
    if info.output is not None:
        console.print(f"output: {json.dumps(info.output)}", highlight=False)
    if messages:
        console.print()
        render_messages(info, console)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def render_messages(info: RunInfo, console: Any) -> None:
    """``runs show --messages``: the conversation the run recorded — the prompt, each model response (text, tool
    calls with their arguments), each tool's result or error, each decision."""
    from rich.markup import escape

    console.print("[bold]messages[/]")
    if info.prompt is not None:
        console.print(f"[bold cyan]user[/]: {escape(_text(info.prompt))}")
    if info.steps and all(s.result is None for s in info.steps):
        console.print("[dim](this engine's admin does not report what each step recorded)[/]")
        return
    names: dict[str, str] = {}
    for s in info.steps:
        r = s.result
        if not isinstance(r, dict):
            continue
        if s.kind == "model":
            for part in r.get("parts") or []:
                kind = part.get("part_kind")
                if kind == "text":
                    console.print(f"[bold green]assistant[/]: {escape(str(part.get('content', '')))}")
                elif kind == "tool-call":
                    names[str(part.get("tool_call_id"))] = str(part.get("tool_name"))
                    args = _text(part.get("args"))
                    console.print(
                        f"[bold green]assistant[/] → [bold]{escape(str(part.get('tool_name')))}[/]({escape(args)}) "
                        f"[dim]call {escape(str(part.get('tool_call_id')))}[/]"
                    )
                elif kind == "thinking":
                    console.print(f"[dim]thinking: {escape(str(part.get('content', '')))}[/]")
        elif s.kind == "tool":
            call_id = s.key.rsplit("/", 1)[-1]
            name = escape(names.get(call_id, call_id))
            outcome = r.get("kind")
            if outcome == "return":
                console.print(f"[bold magenta]tool[/] {name} ← {escape(_text(r.get('value')))}")
            elif outcome == "error":
                kind, message = str(r.get("error_type") or "an error"), str(r.get("message"))
                message = message.removeprefix(f"{kind}: ")
                console.print(f"[bold magenta]tool[/] {name} [red]raised {escape(kind)}[/]: {escape(message)}")
            else:
                console.print(
                    f"[bold magenta]tool[/] {name} [yellow]{escape(str(outcome))}[/]: "
                    f"{escape(str(r.get('message') or ''))}"
                )
        elif s.kind == "approval" and (d := decision_of(s)) is not None:
            verb = "approved" if d["approved"] else "denied"
            who = f" by {d['by']}" if d["by"] else ""
            note = f": {d['note']}" if d["note"] else ""
            console.print(
                f"[bold yellow]human[/] {verb}{escape(who)} call {escape(s.key.rsplit('/', 1)[-1])}{escape(note)}"
            )
