"""The benchmark figures on the pages come from bench/RESULTS.md at build time (docs/_hooks/bench.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from ._run import DOCS, ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"

SAMPLE = """# perdure benchmarks

Measured 2026-11-30 14:14 UTC on vm: 2 cores.

## Core (issue 2)

| measure | median | goal |
|---|---|---|
| loop cost per model turn + tool call (FunctionModel, trivial tool) | 0.320 ms | <= 0.2 ms |

## Embedded engine: DurableAgent on SQLite (issue 3)

| measure | median | ratio | goal |
|---|---|---|---|
| overhead per step, durability=full | 3.465 ms | 0.87x the FULL floor | <= 2x |
| overhead per step, durability=normal | 0.201 ms | 15.97x the NORMAL floor | <= 2x |

| turns | bytes of recorded step results | bytes per turn | journal file after checkpoint |
|---|---|---|---|
| 10 | 3,275 | 328 | 32,768 |

## DBOS (issue 4)

| system database | one DBOS step alone | perdure DBOSAgent per step | pydantic-ai DBOSAgent per step |
|---|---|---|---|
| SQLite | 1.100 ms | 2.200 ms | 5.700 ms |
| PostgreSQL | not measured: no server at 127.0.0.1:5432 | | |

## Anchors: pydantic-ai on Temporal

| measure | median |
|---|---|
| overhead per step | 54.000 ms |
"""


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_bench_hook", DOCS / "_hooks" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def placeholders() -> list[str]:
    return [m for page in sorted(DOCS.rglob("*.md")) for m in re.findall(r"<!-- bench: [^>]*? -->", page.read_text())]


def test_placeholders_become_figures() -> None:
    bench = hook()
    page = (
        "<!-- bench: embedded; overhead per step, durability=full --> / "
        "<!-- bench: core; loop cost per model turn --> / <!-- bench: temporal; overhead per step --> / "
        "<!-- bench: dbos; sqlite; perdure dbosagent per step --> / "
        "<!-- bench: dbos; postgresql; perdure dbosagent per step -->\n"
        "<!-- bench: measured -->"
    )
    assert bench.render(page, SAMPLE) == (
        "3.465 ms / 0.320 ms / not measured yet / 2.200 ms / not measured yet\n"
        "Measured 2026-11-30 14:14 UTC on vm: 2 cores (bench/RESULTS.md, written by `make bench`)."
    )
    assert "not measured yet" in bench.render(page, None)
    assert "`make bench` writes them" in bench.render(page, None)


def test_the_pages_name_figures_that_results_md_holds() -> None:
    marks = placeholders()
    assert len(marks) >= 10
    bench = hook()
    if not RESULTS.exists():  # before the first `make bench`, every figure says so
        assert all(bench.render(m, None) in (bench.NOT_MEASURED, bench.figure("measured", None, [])) for m in marks)
        return
    rendered = {m: bench.render(m, RESULTS.read_text()) for m in marks}
    # The core and embedded sections are always benchmarked: a renamed measure must not go unnoticed.
    for mark, value in rendered.items():
        if "embedded" in mark or "core" in mark or "measured" in mark:
            assert value != bench.NOT_MEASURED, f"bench/RESULTS.md has no figure for {mark}"


def test_results_file_is_where_the_hook_reads() -> None:
    assert hook().RESULTS == RESULTS
    assert Path(hook().__file__).parent.name == "_hooks"
