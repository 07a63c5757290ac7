"""docs/reference/cli.md: every command of the CLI has a section, and every example on the page runs for real.

The examples run against journals made by the documentation's own examples: a finished run ``order-42``
(getting started) and a run ``ticket-7`` waiting for an approval of ``call-1``. Each command gets a fresh copy.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.providers.fake_server import FakeProviderServer

from ._run import DOCS, EXAMPLES, perdure, run_example, start_process, stop_process
from .test_getting_started import script_payment
from .test_pages import blocks

PAGE = DOCS / "reference" / "cli.md"
PERDURE = str(Path(sys.executable).with_name("perdure"))


def page_commands() -> list[list[str]]:
    return [
        shlex.split(line) for lang, body in blocks(PAGE) if lang == "bash" for line in body.splitlines() if line.strip()
    ]


def test_every_command_has_a_section() -> None:
    from perdure._cli import _parser

    text = PAGE.read_text()
    top = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    names = [name for name in top if name != "runs"]
    names += [f"runs {name}" for name in top["runs"]._subparsers._group_actions[0].choices]  # type: ignore[union-attr]
    for name in names:
        assert f"## perdure {name}\n" in text, f"the CLI reference has no section for `perdure {name}`"
        assert f"<!-- cli-help: {name} -->" in text


def _refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory, _openai_server: FakeProviderServer) -> Path:
    """A working directory whose perdure.db holds a finished run and a waiting one, and the modules they use."""
    directory = tmp_path_factory.mktemp("cli")
    _openai_server.reset()
    script_payment(_openai_server, 42)
    env = {"OPENAI_BASE_URL": _openai_server.openai_base_url, "OPENAI_API_KEY": "sk-docs-test"}
    run_example("getting_started/durable_run.py", cwd=directory, env=env)
    sys.path.insert(0, str(EXAMPLES / "concepts"))
    try:
        from scripted import model  # the concepts page's scripted model: its first call is "call-1"

        from perdure import Agent, DurableAgent, RunWaiting

        agent = Agent(model(("refund", {"order_id": 42}), answer="Refunded."), name="support")
        agent.tool_plain(name="refund", requires_approval=True)(_refund)
        with pytest.raises(RunWaiting):
            DurableAgent(agent, journal=directory / "perdure.db").run_sync("Refund order 42", run_id="ticket-7")
    finally:
        sys.path.remove(str(EXAMPLES / "concepts"))
        sys.modules.pop("scripted", None)
    for module in (
        "getting_started/shop.py",
        "getting_started/bank.py",
        "getting_started/offline_model.py",
        "embedded/app.py",
    ):
        shutil.copy(EXAMPLES / module, directory)
    return directory


# `perdure demo` runs once, in test_getting_started.py (with --journal), where its output is compared.
COMMANDS = [argv for argv in page_commands() if argv[:2] != ["perdure", "demo"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=shlex.join)
def test_the_example_runs(
    argv: list[str], journal_dir: Path, tmp_path: Path, openai_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert argv[0] == "perdure"
    shutil.copytree(journal_dir, tmp_path, dirs_exist_ok=True)
    if argv[1] == "worker":  # runs until stopped: start it, see it ready, stop it as a deployment would
        worker = start_process([PERDURE, *argv[1:]], cwd=tmp_path, env={**openai_env, "PYTHONPATH": str(tmp_path)})
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("perdure worker: agent ")
        code, _, err = stop_process(worker)
        # 0 once it serves (SIGTERM hands its runs back); a SIGTERM that beats its signal handler kills it, which
        # is fine for a worker holding nothing yet. test_embedded.py stops a worker that has worked, and checks 0.
        assert code in (0, -signal.SIGTERM), err
        return
    for name, value in openai_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(tmp_path))  # `--agent shop:agent` imports from the working directory
    try:
        perdure(*argv[1:], cwd=tmp_path)
    finally:
        for module in ("shop", "bank", "app"):
            sys.modules.pop(module, None)


def test_commands_change_the_journal_as_documented(journal_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(journal_dir, tmp_path, dirs_exist_ok=True)
    perdure("approve", "ticket-7", "call-1", "--deny", "--note", "refund already issued", cwd=tmp_path)
    assert '"status": "pending"' in perdure("runs", "show", "ticket-7", "--json", cwd=tmp_path)
    perdure("runs", "cancel", "ticket-7", cwd=tmp_path)
    assert '"status": "cancelled"' in perdure("runs", "show", "ticket-7", "--json", cwd=tmp_path)
    assert "pruned 0" in perdure("runs", "prune", "--older-than", "30d", cwd=tmp_path)
    assert "order-42" in perdure("runs", "prune", "--older-than", "0s", "--dry-run", "--json", cwd=tmp_path)
