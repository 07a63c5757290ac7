"""The pages' rules: every code example on them is a file that a test runs, and every command on them exists.

* A ``python`` block holds only ``--8<--`` includes of files that run in the test suite: the examples under
  ``examples/`` (run by the tests of this folder), or the two files of the conformance suite shown on the testing
  page (run by ``tests/conformance``).
* Every example is run by a test of this folder (directly, or imported by one that is).
* Every output a page shows (``<!-- output: ... -->``) belongs to a ``run_example`` call, which compares them.
* Every shell command on a page is checked: ``perdure`` commands parse with the real parser (and the CLI
  reference's run for real, in test_cli.py), extras and packages exist, example scripts and make targets exist,
  and the flags given to the Temporal and Prefect servers are flags they have.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

from ._run import DOCS, EXAMPLES, ROOT, documented_outputs

PAGES = sorted(DOCS.rglob("*.md"))
TESTS = Path(__file__).parent
_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"$')

# Files shown on a page that are not examples: each runs in the suite, elsewhere.
RUN_ELSEWHERE = {
    "src/perdure/testing/conformance/local.py": "the embedded engine's conformance driver: tests/conformance",
    "tests/conformance/engine_temporal.py": "registers Temporal in the conformance suite: tests/conformance",
}
# Shell commands shown but not run, with the reason.
NOT_RUN = {
    "docker": "starts infrastructure (a PostgreSQL server); the tests use the machine's PostgreSQL instead",
    "dbos postgres": "starts PostgreSQL in Docker; the tests use the machine's PostgreSQL instead",
}


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, dedented body) of every fenced block of a page, nested ones included."""
    out = []
    for m in _FENCE.finditer(page.read_text()):
        indent = len(m.group("indent"))
        body = "".join(line[indent:] for line in m.group("body").splitlines(keepends=True))
        out.append((m.group("lang"), body))
    return out


def _page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@cache
def _tests_source() -> str:
    return "\n".join(p.read_text() for p in sorted(TESTS.glob("*.py")))


@cache
def example_runs() -> set[tuple[str, tuple[str, ...]]]:
    """Every (example path, args) that a test of this folder runs (``run_example``, ``run_concurrently``)."""
    calls = re.finditer(r'run_example\(\s*"([^"]+)"((?:,\s*"[^"]*")*)', _tests_source())
    runs = {(m.group(1), tuple(re.findall(r'"([^"]*)"', m.group(2)))) for m in calls}
    # run_concurrently(("path", (args...), options), ...)
    tuples = re.finditer(r'\(\s*"([\w/]+\.py)",\s*\(((?:\s*"[^"]*",?)*)\s*\)', _tests_source())
    runs |= {(m.group(1), tuple(re.findall(r'"([^"]*)"', m.group(2)))) for m in tuples}
    # Long-running examples (workers) and example test files are started by path, without arguments.
    return runs | {(m, ()) for m in re.findall(r'EXAMPLES / "([^"]+\.py)"', _tests_source())}


def _imports(path: Path) -> set[str]:
    return set(re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.M))


def test_there_are_pages() -> None:
    assert len(PAGES) >= 15


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_python_on_pages_is_included_from_files_that_run(page: Path) -> None:
    for lang, body in blocks(page):
        if lang not in ("python", "py"):
            continue
        lines = [line for line in body.splitlines() if line.strip()]
        assert lines, f"{_page_id(page)}: an empty python block"
        for line in lines:
            m = _INCLUDE.match(line.strip())
            assert m, (
                f"{_page_id(page)}: python written on the page is run by no test; put it in examples/ and include "
                f'it with --8<-- "examples/...":\n{body}'
            )
            path = m.group("path")
            assert (ROOT / path).is_file(), f"{_page_id(page)} includes {path}, which does not exist"
            if path.startswith("examples/"):
                assert path.endswith(".py")
            else:
                assert path in RUN_ELSEWHERE, f"{_page_id(page)} includes {path}, which no test runs"
            section = m.group("section")
            if section:
                text = (ROOT / path).read_text()
                assert f"# --8<-- [start:{section}]" in text and f"# --8<-- [end:{section}]" in text


def test_every_example_is_shown_on_a_page_and_run_by_a_test() -> None:
    shown = {
        m.group("path")
        for page in PAGES
        for lang, body in blocks(page)
        for line in body.splitlines()
        if (m := _INCLUDE.match(line.strip()))
    }
    run = {path for path, _ in example_runs()}

    def ran(rel: str) -> bool:
        return rel in run

    for path in sorted(EXAMPLES.rglob("*.py")):
        rel = str(path.relative_to(EXAMPLES))
        assert f"examples/{rel}" in shown, f"no page shows examples/{rel}"
        if ran(rel):
            continue
        # A module of an example (the agent it imports, a stand-in for a bank, the model the agent uses): run when
        # its importer is, directly or through another module.
        imported: set[str] = set()
        todo = [p for p in path.parent.glob("*.py") if ran(str(p.relative_to(EXAMPLES)))]
        while todo:
            for name in _imports(todo.pop()) - imported:
                imported.add(name)
                if (path.parent / f"{name}.py").is_file():
                    todo.append(path.parent / f"{name}.py")
        assert path.stem in imported, f"examples/{rel} is run by no test of tests/docs"


def test_every_documented_output_is_compared() -> None:
    outputs = documented_outputs()
    assert outputs
    for page, example, args, _ in outputs:
        assert (example.removeprefix("examples/"), args) in example_runs(), (
            f"{page.relative_to(ROOT)} shows the output of `python {example} {' '.join(args)}`, which no "
            "run_example(...) of tests/docs runs"
        )


def commands(page: Path) -> list[str]:
    """The shell commands of a page: the lines of its bash blocks."""
    found = []
    for lang, body in blocks(page):
        if lang in ("bash", "sh", "shell", "console"):
            found += [line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#")]
    return found


def mentions(page: Path) -> list[str]:
    """``perdure ...`` commands named in the text (inline code), possibly without their required arguments."""
    return re.findall(r"`(perdure [^`]*)`", _FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_commands_on_pages_exist(page: Path) -> None:
    for command in commands(page):
        check_command(command, page)
    for mention in mentions(page):
        check_mention(shlex.split(mention)[1:], f"{_page_id(page)}: `{mention}`")


def test_commands_in_the_readme_exist() -> None:
    readme = ROOT / "README.md"
    for command in commands(readme):
        check_command(command, readme)
    for mention in mentions(readme):
        check_mention(shlex.split(mention)[1:], f"README.md: `{mention}`")


def check_mention(words: list[str], where: str) -> None:
    """The command exists, and so does every option it names."""
    import argparse

    from perdure._cli import _parser

    parser = _parser()
    for word in words:
        if word.startswith("-"):
            assert word.split("=")[0] in parser._option_string_actions, f"{where}: no option {word}"
            continue
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subparsers:
            alternatives = word.split("|")  # `perdure runs list|show|cancel`
            for name in alternatives:
                assert name in subparsers[0].choices, f"{where}: no command {name!r}"
            parser = subparsers[0].choices[alternatives[0]]


def check_command(command: str, page: Path) -> None:
    words = shlex.split(command, comments=True)
    where = f"{page.relative_to(ROOT)}: `{command}`"
    program, args = words[0], words[1:]
    if program == "perdure":
        parse_perdure(args, where)
    elif program == "pip":
        assert args[0] == "install", where
        for requirement in args[1:]:
            check_requirement(requirement, where)
    elif program == "export":
        assert re.fullmatch(r"[A-Z_]+=\S+", args[0]), where
    elif program == "python":
        check_example_run(args, where)
    elif program == "pytest":
        target = args[0]
        assert (ROOT / target).exists() or any(EXAMPLES.rglob(target)), where
    elif program == "make":
        makefile = (ROOT / "Makefile").read_text()
        if args[:1] == ["-C"]:  # make -C /path/to/perdure dist: this checkout's Makefile
            args = args[2:]
        for target in args:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{where}: no make target {target}"
    elif program in ("temporal", "prefect"):
        check_server_flags(program, args, where)
    elif program == "dbos":
        check_dbos_command(args, where)
    else:
        assert program in NOT_RUN, f"{where}: no rule checks this command; add one to tests/docs/test_pages.py"


def parse_perdure(args: list[str], where: str) -> None:
    from perdure._cli import _parser

    try:
        _parser().parse_args(args)
    except SystemExit as e:
        pytest.fail(f"{where}: the perdure command does not accept this (argparse exited {e.code})")


@cache
def _extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def check_requirement(requirement: str, where: str, *, source_required: bool = True) -> None:
    """A package perdure's extras install, or perdure itself: with an extra that exists and, since perdure is on
    no package index, from a checkout or a wheel built by ``make dist`` (tests/install installs both that way)."""
    m = re.fullmatch(r"perdure(?:\[([\w,]+)\])?(?: @ (\S+))?", requirement)
    if m and m.group(2) is None and source_required:
        pytest.fail(f"{where}: perdure is on no package index; install it @ file:///path/to/perdure (a checkout)")
    if m:
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        wheel = f"file:///path/to/perdure/dist/perdure-{version}-py3-none-any.whl"
        sources = ("file:///path/to/perdure", wheel, None if not source_required else "")
        assert m.group(2) in sources, f"{where}: install from a checkout or from {wheel}"
        unknown = set((m.group(1) or "").split(",")) - _extras() - {""}
        assert not unknown, f"{where}: perdure has no extra {unknown}"
        return
    try:
        importlib.metadata.distribution(requirement)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{where}: {requirement} is not installed with perdure's extras, so no test uses it")


def check_example_run(args: list[str], where: str) -> None:
    script, script_args = args[0], tuple(args[1:])
    matches = [p for p in EXAMPLES.rglob(script)]
    assert matches, f"{where}: no example {script}"
    runs = {(path, a) for path, a in example_runs() if path.endswith("/" + script) or path == script}
    assert any(a == script_args for _, a in runs), f"{where}: no test runs {script} with {script_args}"


@cache
def _help(program: str) -> str:
    if program == "temporal":
        binary = Path(sys.executable).with_name("temporal")
        cmd = [str(binary), "server", "start-dev", "--help"]
    else:
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--help"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_server_flags(program: str, args: list[str], where: str) -> None:
    expected = ["server", "start-dev"] if program == "temporal" else ["server", "start"]
    assert args[: len(expected)] == expected, f"{where}: only `{program} {' '.join(expected)}` is checked"
    for flag in (a.split("=")[0] for a in args[len(expected) :] if a.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", _help(program)), f"{where}: {program} has no {flag}"


def check_dbos_command(args: list[str], where: str) -> None:
    """DBOS's command line: the subcommand exists and takes the options given (``dbos ... --help``)."""
    if f"dbos {args[0]}" in NOT_RUN:
        return
    words = [a for a in args if not a.startswith("-") and not a.startswith("$")]
    path = words[:2]  # dbos workflow list
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dbos")), *path, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{where}: no `dbos {' '.join(path)}`\n{done.stderr}"
    for flag in (a for a in args if a.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", done.stdout), f"{where}: `dbos` has no {flag}"
