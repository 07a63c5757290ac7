"""README.md: the two commands come first, and its Python example runs.

The example calls ``bank.charge(...)``, a payment provider's client that the README leaves to the reader: the test
provides one that records its calls. The model is the real OpenAI client against the fake server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.providers.fake_server import FakeProviderServer, openai_completion

from ._run import ROOT

README = (ROOT / "README.md").read_text()


def fenced(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.M | re.S)


def test_the_two_commands_come_first() -> None:
    first_block = re.search(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)
    assert first_block is not None and first_block.group(1) == "bash"
    assert [line.split()[:2] for line in first_block.group(2).splitlines()] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


class Bank:
    def __init__(self) -> None:
        self.charges: dict[str, int] = {}

    def charge(self, amount_cents: int, *, idempotency_key: Any) -> str:
        self.charges.setdefault(idempotency_key, amount_cents)
        return f"ch_{len(self.charges):04d}"


def test_the_example_runs(
    openai: FakeProviderServer,
    openai_env: dict[str, str],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (code,) = fenced("python")
    for name, value in openai_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PERDURE_JOURNAL", raising=False)
    monkeypatch.chdir(workdir)
    openai.enqueue(
        openai_completion(tool_calls=[("call_1", "charge_card", json.dumps({"amount_cents": 4200}))]),
        openai_completion("Charged $42.00 for order 42."),
    )
    bank = Bank()
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__", "bank": bank})
    assert capsys.readouterr().out == "Charged $42.00 for order 42.\n"
    assert bank.charges == {"order-42/turn/1/tool/call_1": 4200}
    assert (workdir / "perdure.db").exists()  # "journal: ./perdure.db"

    # "Run it again ... with the same run_id": the recorded result, nothing executed, the model not asked.
    exec(compile(code, "README.md", "exec"), {"__name__": "__main__", "bank": bank})
    assert capsys.readouterr().out == "Charged $42.00 for order 42.\n"
    assert len(openai.requests) == 2 and len(bank.charges) == 1
