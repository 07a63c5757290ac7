"""``perdure demo``: a run is killed with SIGKILL in the middle of a tool call and recovered by a new process.

The agent books a refund-free order payment: it looks up an order, charges the card through a (fake, file-based)
bank that honours idempotency keys, and emails a receipt. The first process is SIGKILLed while the receipt is
being sent; a second process recovers the run from the journal. The timeline shows which steps each process
executed and which it replayed, and the bank's ledger shows the card was charged exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .._agent import Agent
from .._context import RunContext
from ..messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from ..models.function import AgentInfo, FunctionModel

RUN_ID = "order-42"
INSTRUCTIONS = (
    "You handle payment for order 42. First call lookup_order, then charge_card with the order's amount in "
    "cents, then send_receipt with the charge id. Finish with one sentence saying what you did."
)


def _scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The demo's model, so it needs no API key: the same decisions a real model makes here."""
    turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
    returns = {
        p.tool_name: p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    }
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart(tool_name="lookup_order", args={"order_id": 42}, tool_call_id="c1")])
    if turn == 2:
        amount = returns["lookup_order"]["amount_cents"]
        return ModelResponse(
            parts=[ToolCallPart(tool_name="charge_card", args={"amount_cents": amount}, tool_call_id="c2")]
        )
    if turn == 3:
        charge = returns["charge_card"]
        return ModelResponse(
            parts=[ToolCallPart(tool_name="send_receipt", args={"charge_id": charge}, tool_call_id="c3")]
        )
    return ModelResponse(parts=[TextPart(content="Charged $42.00 for order 42 and emailed the receipt.")])


def build_agent(model: str | None = None) -> Agent[Path, str]:
    """The demo agent; ``deps`` is the demo's working directory (the bank ledger and the outbox live there)."""
    agent: Agent[Path, str] = Agent(
        model or FunctionModel(_scripted, model_name="scripted-demo-model"),
        name="payments-demo",
        instructions=INSTRUCTIONS,
        deps_type=Path,
    )

    @agent.tool
    def lookup_order(ctx: RunContext[Path], order_id: int) -> dict[str, Any]:
        """Look up an order.

        Args:
            order_id: the order number.
        """
        return {"order_id": order_id, "amount_cents": 4200, "customer": "ada@example.com"}

    @agent.tool
    def charge_card(ctx: RunContext[Path], amount_cents: int) -> str:
        """Charge the customer's card.

        Args:
            amount_cents: the amount to charge, in cents.
        """
        _count(ctx.deps, "charge_card")
        return _bank_charge(ctx.deps, amount_cents, ctx.idempotency_key or "")

    @agent.tool
    def send_receipt(ctx: RunContext[Path], charge_id: str) -> str:
        """Email the receipt for a charge.

        Args:
            charge_id: the id the bank returned for the charge.
        """
        _count(ctx.deps, "send_receipt")
        marker = ctx.deps / "in-send-receipt"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(60)  # a slow mail server: the demo kills this process right here
        return f"receipt for {charge_id} sent"

    return agent


def _count(workdir: Path, tool: str) -> None:
    with open(workdir / "executions.log", "a") as f:
        f.write(tool + "\n")


def _bank_charge(workdir: Path, amount_cents: int, idempotency_key: str) -> str:
    """A bank that charges once per idempotency key (as Stripe and others do)."""
    ledger = workdir / "bank-ledger.json"
    charges: dict[str, Any] = json.loads(ledger.read_text()) if ledger.exists() else {}
    if idempotency_key not in charges:
        charges[idempotency_key] = {"id": f"ch_{len(charges) + 1:04d}", "amount_cents": amount_cents}
        ledger.write_text(json.dumps(charges))
    return str(charges[idempotency_key]["id"])


def child(argv: list[str]) -> None:
    """In a child process: run (or recover) the demo run."""
    from ..local import DurableAgent

    mode, journal, workdir, model = argv[0], argv[1], Path(argv[2]), (argv[3] or None)
    durable = DurableAgent(build_agent(model), journal=journal)
    if mode == "run":
        result = durable.run_sync("Take payment for order 42.", run_id=RUN_ID, deps=workdir)
        print(json.dumps({"output": result.output}))
    else:
        recovered = durable.recover_sync(deps=workdir)
        print(json.dumps({"recovered": recovered, "output": durable.get_run_sync(RUN_ID).output}))


def main(*, model: str | None = None, journal: str | None = None, keep: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    from rich.console import Console

    from ..local import DurableAgent
    from ._render import render_timeline

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="perdure-demo-"))
    journal_path = journal or str(workdir / "perdure.db")
    cmd = [sys.executable, "-m", "perdure.cli._demo"]
    args = [journal_path, str(workdir), model or ""]
    console.print(f"[bold]perdure demo[/] — journal: {journal_path}")
    console.print(
        "1. A worker process starts run [cyan]order-42[/]: look up the order, charge the card, email the receipt."
    )
    t0 = time.monotonic()
    first = subprocess.Popen([*cmd, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = workdir / "in-send-receipt"
    while not marker.exists():
        if first.poll() is not None:
            _, err = first.communicate()
            console.print(f"[red]the worker exited before reaching send_receipt:[/]\n{err}")
            return 1
        if time.monotonic() - t0 > 120:
            first.kill()
            console.print("[red]the worker did not reach send_receipt in 120 s[/]")
            return 1
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    console.print(
        f"2. While it is inside [bold]send_receipt[/], the worker (pid {first.pid}) is killed with "
        "[bold red]SIGKILL[/]."
    )
    console.print("3. A new process opens the journal and calls [bold]recover()[/].")
    second = subprocess.run([*cmd, "recover", *args], capture_output=True, text=True, timeout=300)
    if second.returncode != 0:
        console.print(f"[red]recovery failed:[/]\n{second.stderr}")
        return 1
    info = DurableAgent(build_agent(model), journal=journal_path).get_run_sync(RUN_ID)
    console.print()
    console.print(render_timeline(info))
    executions = (workdir / "executions.log").read_text().split()
    ledger = json.loads((workdir / "bank-ledger.json").read_text())
    console.print()
    console.print(f"[bold]Output:[/] {info.output}")
    console.print(
        f"charge_card executed [bold]{executions.count('charge_card')}[/] time(s); the bank's ledger holds "
        f"[bold]{len(ledger)}[/] charge(s): "
        + ", ".join(f"{c['id']} ${c['amount_cents'] / 100:.2f}" for c in ledger.values())
    )
    console.print(
        f"send_receipt executed {executions.count('send_receipt')} times: interrupted once by the kill, then run "
        "again on recovery (at-least-once, with the same ctx.idempotency_key)."
    )
    ok = info.status == "completed" and executions.count("charge_card") == 1 and len(ledger) == 1
    console.print(
        f"[{'green' if ok else 'red'}]{'exactly once: the card was charged one time' if ok else 'FAILED'}"
        f"[/] — {time.monotonic() - t0:.1f} s"
    )
    if not keep and journal is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    child(sys.argv[1:])
