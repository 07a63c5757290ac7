"""Every python block of README.md and of every page runs as written: each in a fresh directory, offline.

A reader saves the files a page shows into an empty folder and runs the commands the page gives. This test does
the same for every python block: in a new directory it saves every file the block's page shows (by the name the
page gives it), then runs the page's commands for that file (``python crash.py``, ``python crash.py recover``,
``pytest test_support.py``) in order, or ``python <file>`` when the page gives none. No API key, no journal
variable, no engine server: the environment a reader starts with. The examples use TestModel, FunctionModel or
a stand-in, and a block that truly needs a key or a server is in ``NEEDS``, with the reason and the test that runs
it against a real one.

What each example prints is checked by the page's own test (``run_example`` compares it with the page); here the
question is only whether it runs, and whether the pages' files fit in one folder.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._collector import Collector
from ._run import DOCS, EXAMPLES, ROOT
from .test_pages import _INCLUDE, blocks

PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

# The blocks that cannot run in an empty folder offline, each with the reason and where it runs for real.
NEEDS = {
    "examples/temporal_engine/support.py": "needs a Temporal server (to start a run): test_temporal.py's dev server",
    "examples/temporal_engine/worker.py": "a Temporal worker: needs a server, runs until stopped (test_temporal.py)",
    "examples/temporal_engine/run.py": "needs a Temporal server: test_temporal.py runs it against the dev server",
    "examples/temporal_engine/ticket.py": "needs a Temporal server: test_temporal.py runs it against the dev server",
    "examples/temporal_engine/approvals.py": "needs a Temporal server: test_temporal.py runs it with the dev server",
    "examples/prefect_engine/app.py": "needs a Prefect server (PREFECT_API_URL): test_prefect.py's server",
    "examples/prefect_engine/crash.py": "needs a Prefect server (PREFECT_API_URL): test_prefect.py's server",
    "examples/prefect_engine/approvals.py": "needs a Prefect server (PREFECT_API_URL): test_prefect.py's server",
    "examples/embedded/worker.py": "a worker: runs until stopped; test_embedded.py starts it and stops it",
    "examples/embedded/wait.py": "waits for runs start.py accepted and a worker executes: test_embedded.py",
    "src/perdure/testing/conformance/local.py": "the embedded engine's conformance driver: tests/conformance",
    "tests/conformance/engine_temporal.py": "registers Temporal in the conformance suite: tests/conformance",
}
# Commands that end the way the page says: the process kills itself inside a tool (SIGKILL), and the page's next
# command recovers the run. (example, which of the page's commands for it)
KILLED = {
    ("examples/getting_started/crash.py", 0),
    ("examples/dbos_engine/crash.py", 0),
    ("examples/concepts/at_most_once.py", 0),
}
# Variables a reader's shell does not have: keys, and what points perdure or an engine somewhere.
_UNSET = re.compile(r"^(OPENAI_|ANTHROPIC_|GEMINI_|GOOGLE_API|PERDURE_|PREFECT_|DBOS_|TEMPORAL_|OTEL_|LOGFIRE_)")


@dataclass(frozen=True)
class Block:
    page: Path
    number: int  # the block's position among the page's python blocks, from 1
    file: str  # the file the block shows (a path of this repository), or "" for code written on the page
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}#{self.number}:{self.name}"

    @property
    def name(self) -> str:
        """The name a reader saves it under."""
        return Path(self.file).name if self.file else f"{self.page.stem.lower()}_{self.number}.py"


def python_blocks(page: Path) -> list[Block]:
    found = []
    for lang, body in blocks(page):
        if lang not in ("python", "py"):
            continue
        number = len(found) + 1
        includes = [m for line in body.splitlines() if (m := _INCLUDE.match(line.strip()))]
        if not includes:
            found.append(Block(page, number, "", body))
        for m in includes:
            # A section of a file (``shop.py:charge``) is a fragment: the file runs whole where the page shows it.
            if m.group("section") is None:
                found.append(Block(page, number, m.group("path"), (ROOT / m.group("path")).read_text()))
    return found


ALL = [block for page in PAGES for block in python_blocks(page)]


def commands(page: Path, name: str) -> list[list[str]]:
    """The page's commands that run ``name``: ``python name args...`` and ``pytest name``."""
    found = []
    for lang, body in blocks(page):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["python", name]:
                found.append([sys.executable, *words[1:]])
            elif words[:2] == ["pytest", name]:
                found.append([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *words[1:]])
    return found


def reader_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _UNSET.match(k) and k not in ("PYTHONPATH", "COLUMNS")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1"}


@contextmanager
def _collector() -> Iterator[dict[str, str]]:
    with Collector() as collector:
        yield {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}


# Blocks that need a stand-in on 127.0.0.1, as the page's reader needs the real thing.
STAND_INS = {"examples/observability/otlp.py": _collector}


def test_every_block_is_run_or_needs_something_named() -> None:
    shown = {b.file for b in ALL}
    assert not set(NEEDS) - shown, f"NEEDS names blocks no page shows: {set(NEEDS) - shown}"
    assert len(NEEDS) <= 12, "the list of blocks that do not run offline keeps growing: give them stand-ins"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_files_fit_in_one_folder(page: Path) -> None:
    """A reader saves a page's files side by side: two different files may not have the same name."""
    by_name: dict[str, set[str]] = {}
    for block in python_blocks(page):
        by_name.setdefault(block.name, set()).add(block.file)
    clashes = {name: files for name, files in by_name.items() if len(files) > 1}
    assert not clashes, f"{page.relative_to(ROOT)} shows different files under one name: {clashes}"


def linked_pages(page: Path) -> list[Path]:
    """The pages ``page`` links to (``[...](other.md#anchor)``)."""
    targets = re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text())
    return [p for t in targets if (p := (page.parent / t).resolve()).is_file()]


def save_files(page: Path, folder: Path) -> None:
    """What a reader of ``page`` has saved: its files, and the modules they import that a page it links to shows
    (``shop.py is the agent of getting started``)."""
    for block in python_blocks(page):
        (folder / block.name).write_text(block.code)
    elsewhere = {b.name: b for linked in linked_pages(page) for b in python_blocks(linked)}
    missing = True
    while missing:
        missing = False
        for saved in list(folder.glob("*.py")):
            for module in re.findall(r"^(?:from|import) (\w+)", saved.read_text(), re.M):
                name = f"{module}.py"
                if (folder / name).exists():
                    continue
                if name in elsewhere:
                    (folder / name).write_text(elsewhere[name].code)
                    missing = True
                elif any(EXAMPLES.rglob(name)):
                    pytest.fail(
                        f"{page.relative_to(ROOT)} shows {saved.name}, which imports {module}: neither the page nor a "
                        "page it links to shows it"
                    )


@pytest.mark.parametrize("block", ALL, ids=lambda b: b.id)
def test_the_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    if block.file in NEEDS:
        pytest.skip(NEEDS[block.file])
    save_files(block.page, tmp_path)
    runs = commands(block.page, block.name) or [[sys.executable, block.name]]
    stand_in: AbstractContextManager[dict[str, str] | None] = STAND_INS.get(block.file, nullcontext)()
    with stand_in as extra:
        for number, argv in enumerate(runs):
            done = subprocess.run(
                argv, cwd=tmp_path, env={**reader_env(), **(extra or {})}, capture_output=True, text=True, timeout=180
            )
            expected = -9 if (block.file, number) in KILLED else 0
            shown = " ".join(["python", *argv[1:]])
            assert done.returncode == expected, (
                f"{block.id}: `{shown}` in a fresh folder exited {done.returncode}, not {expected}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )


def _store(path: Path, tree: ast.AST) -> str:
    """Where the runs of an example live when a reader runs it: its engine's store, or its embedded journal."""
    if path.parent.name.endswith("_engine"):
        return path.parent.name  # one DBOS database, Prefect server or Temporal namespace for the page's examples
    journals = [
        k.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DurableAgent"
        for k in node.keywords
        if k.arg == "journal" and isinstance(k.value, ast.Constant)
    ]
    return f"journal {journals[0] if journals else 'perdure.db'}"


def test_examples_sharing_a_store_have_their_own_run_ids_and_agent_names() -> None:
    """Saved in one folder, two examples that meet in one journal (or engine) must not share a run id or an agent
    name: the second would get the first one's recorded result, or a NonDeterminismError."""
    owners: dict[tuple[str, str, str], set[str]] = {}
    for path in sorted(EXAMPLES.rglob("*.py")):
        tree = ast.parse(path.read_text())
        store = _store(path, tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            for k in node.keywords:
                if not (isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)):
                    continue
                if k.arg == "run_id" or (k.arg == "name" and called == "Agent"):
                    kind = "run id" if k.arg == "run_id" else "agent name"
                    owners.setdefault((store, kind, k.value.value), set()).add(str(path.relative_to(EXAMPLES)))
    shared = {key: files for key, files in owners.items() if len(files) > 1}
    assert not shared, f"examples that meet in one store share ids: {shared}"
