"""The API reference pages are generated from the docstrings of these modules.

Their ``::`` code blocks are fragments (they use names defined elsewhere: an ``agent``, a ``client``), so they
cannot run on their own; every one must at least be valid Python. Shell commands in them are checked like the
pages' (test_pages.py). The pages' own examples, which do run, are under examples/.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from ._run import DOCS

MODULES = sorted(
    {
        m
        for page in (DOCS / "reference" / "api").glob("*.md")
        for m in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)
    }
)


def code_blocks(doc: str) -> Iterator[str]:
    """The reStructuredText literal blocks of a docstring: the indented lines after a line ending in ``::``."""
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].rstrip().endswith("::"):
            i += 1
            continue
        base = len(lines[i]) - len(lines[i].lstrip())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j == len(lines) or len(lines[j]) - len(lines[j].lstrip()) <= base:
            i = j
            continue
        indent = len(lines[j]) - len(lines[j].lstrip())
        k = j
        while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= indent):
            k += 1
        yield textwrap.dedent("\n".join(lines[j:k]))
        i = k


def documented(module_name: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of the module and of what it exports, with their public members."""
    module = importlib.import_module(module_name)
    seen: set[int] = set()

    def visit(obj: Any, name: str) -> Iterator[tuple[str, str]]:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        doc = inspect.getdoc(obj)
        if doc:
            yield name, doc
        if inspect.isclass(obj):
            for key, value in vars(obj).items():
                if key.startswith("_") and key != "__init__":
                    continue
                target = value.fget if isinstance(value, property) else value
                if inspect.isfunction(target) or inspect.isclass(target):
                    yield from visit(target, f"{name}.{key}")

    yield from visit(module, module_name)
    for key in getattr(module, "__all__", []):
        value = getattr(module, key)
        if inspect.isclass(value) or inspect.isfunction(value):
            yield from visit(value, f"{module_name}.{key}")


def test_the_reference_covers_the_engines() -> None:
    assert {"perdure", "perdure.testing", "perdure.dbos", "perdure.temporal", "perdure.prefect"} <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_code_is_valid_python(module_name: str) -> None:
    from .test_pages import check_requirement

    for name, doc in documented(module_name):
        for block in code_blocks(doc):
            if block.startswith("pip install "):
                for requirement in block.split()[2:]:
                    # Docstrings still say `pip install "perdure[extra]"` (no source); the pages give the full form.
                    check_requirement(requirement.strip('"'), name, source_required=False)
                continue
            try:
                compile(block, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            except SyntaxError as e:
                pytest.fail(f"the docstring of {name} shows code that is not valid Python ({e}):\n{block}")
