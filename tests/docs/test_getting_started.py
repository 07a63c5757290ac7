"""docs/getting-started.md: a first agent, a first durable run, a crash and its recovery, the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.providers.fake_server import FakeProviderServer, openai_completion

from ._run import DOCS, perdure, run_example


def script_payment(server: FakeProviderServer, order_id: int, *, charge_id: str = "ch_0001") -> None:
    """What a model does with the payments agent: look up, charge, send the receipt, then say so."""
    server.enqueue(
        openai_completion(tool_calls=[("call_1", "lookup_order", json.dumps({"order_id": order_id}))]),
        openai_completion(tool_calls=[("call_2", "charge_card", json.dumps({"amount_cents": 4200}))]),
        openai_completion(tool_calls=[("call_3", "send_receipt", json.dumps({"charge_id": charge_id}))]),
        openai_completion(f"Charged $42.00 for order {order_id} and emailed the receipt."),
    )


def test_plain_run(openai: FakeProviderServer, openai_env: dict[str, str], workdir: Path) -> None:
    script_payment(openai, 42)
    out = run_example("getting_started/plain_run.py", cwd=workdir, env=openai_env)
    assert out.startswith("Charged $42.00 for order 42 and emailed the receipt.\n")
    assert not (workdir / "perdure.db").exists()  # a plain run records nothing


def test_durable_run(openai: FakeProviderServer, openai_env: dict[str, str], workdir: Path) -> None:
    script_payment(openai, 42)
    out = run_example("getting_started/durable_run.py", cwd=workdir, env=openai_env)
    assert "charges for order-42: 1\n" in out
    assert len(openai.requests) == 4  # the second run_sync asked the model nothing


def test_crash_and_recover(openai: FakeProviderServer, openai_env: dict[str, str], workdir: Path) -> None:
    script_payment(openai, 7)
    run_example("getting_started/crash.py", cwd=workdir, env=openai_env, fresh_process=True, returncode=-9)
    assert len(openai.requests) == 3  # killed inside send_receipt, before the last model request
    out = run_example("getting_started/crash.py", "recover", cwd=workdir, env=openai_env, fresh_process=True)
    assert "charges for order-7: 1\n" in out
    assert len(openai.requests) == 4  # the recovery asked only what was not recorded


def test_quickstart(openai: FakeProviderServer, openai_env: dict[str, str], workdir: Path) -> None:
    """With OPENAI_API_KEY set the quickstart (README's example) talks to OpenAI: here the fake server."""
    openai.enqueue(
        openai_completion(tool_calls=[("call_1", "charge_card", json.dumps({"amount_cents": 1200}))]),
        openai_completion("Charged $12.00 for order 12."),
    )
    assert run_example("getting_started/quickstart.py", cwd=workdir, env=openai_env) == "Charged $12.00 for order 12.\n"
    # Again, after it finished: the recorded result; the model is not asked.
    assert run_example("getting_started/quickstart.py", cwd=workdir, env=openai_env) == "Charged $12.00 for order 12.\n"
    assert len(openai.requests) == 2


def test_the_guide_followed_in_order_offline(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader with no API key saves the page's files into one folder and runs its commands in order: each prints
    what the page shows (run_example compares), the card is charged once per order, and nothing collides."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PERDURE_JOURNAL", raising=False)
    plain = run_example("getting_started/plain_run.py", cwd=workdir)
    assert plain.startswith("Charged $42.00 for order 42 and emailed the receipt.\n")
    assert "charges for order-42: 1\n" in run_example("getting_started/durable_run.py", cwd=workdir)
    run_example("getting_started/crash.py", cwd=workdir, fresh_process=True, returncode=-9)
    out = run_example("getting_started/crash.py", "recover", cwd=workdir, fresh_process=True)
    assert "charges for order-7: 1\n" in out
    # And the quickstart (README, home page) in the same folder: its own agent and run id.
    assert run_example("getting_started/quickstart.py", cwd=workdir) == '{"charge_card": "charged 0 cents"}\n'


def _normalized(text: str) -> list[str]:
    """Lines with numbers, paths and spacing that vary from run to run made equal."""
    text = re.sub(r"journal: \S+", "journal: JOURNAL", text)
    return [re.sub(r"\s+", " ", re.sub(r"\d+", "N", line)).strip() for line in text.strip().splitlines()]


def test_demo(workdir: Path) -> None:
    """`perdure demo`, with its journal kept (the CLI reference's `--journal demo.db`), shows what the page shows."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("perdure")), "demo", "--journal", "demo.db"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (DOCS / "getting-started.md").read_text()
    (shown,) = re.findall(r"<!-- command-output: perdure demo -->\n```text\n(.*?)^```", page, re.M | re.S)
    assert _normalized(done.stdout) == _normalized(shown)
    # "to look at with perdure runs show order-42 --journal demo.db"
    assert "replayed" in perdure("runs", "show", "order-42", "--journal", "demo.db", cwd=workdir)
