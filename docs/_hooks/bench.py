"""MkDocs hook: benchmark figures on the pages come from bench/RESULTS.md (``make bench``) when the site is built.

``<!-- bench: SECTION | MEASURE -->`` becomes the median of the first row of RESULTS.md whose measure contains
MEASURE, in a section whose heading contains SECTION (both case-insensitive; sections that measure other
frameworks, the anchors, are skipped unless SECTION names them); ``<!-- bench: measured -->`` the
line saying when and where they were measured. A figure that RESULTS.md does not hold (yet) reads "not measured
yet". The pages cannot drift from the file: there is nothing to copy by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"
NOT_MEASURED = "not measured yet"
_OTHERS = ("pydantic-ai", "pydantic_ai", "anchor", "langgraph")
_MARK = re.compile(r"<!-- bench: (?P<spec>[^>]*?) -->")


@dataclass(frozen=True)
class Row:
    section: str
    measure: str
    median: str


def parse(text: str) -> tuple[str | None, list[Row]]:
    """The "Measured ..." line, and every table row (section heading, first cell, second cell)."""
    measured = None
    section = ""
    rows: list[Row] = []
    for line in text.splitlines():
        if line.startswith("Measured ") and measured is None:
            measured = line.strip().rstrip(".")
        elif line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[1] and cells[0] not in ("measure", "turns", "durability", "system"):
                rows.append(Row(section, cells[0], cells[1]))
    return measured, rows


def figure(spec: str, measured: str | None, rows: list[Row]) -> str:
    if spec.strip() == "measured":
        if measured is None:
            return "No benchmark results yet: `make bench` writes them to bench/RESULTS.md."
        return f"{measured} (bench/RESULTS.md, written by `make bench`)."
    section, _, measure = (part.strip().lower() for part in spec.partition("|"))
    for row in rows:
        heading = row.section.lower()
        if any(other in heading and other not in section for other in _OTHERS):
            continue  # a section measuring other frameworks (the anchors) never stands for perdure's engines
        if section in heading and measure in row.measure.lower():
            return row.median
    return NOT_MEASURED


def render(markdown: str, results: str | None) -> str:
    measured, rows = parse(results) if results is not None else (None, [])
    return _MARK.sub(lambda m: figure(m.group("spec"), measured, rows), markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if "<!-- bench:" not in markdown:
        return markdown
    return render(markdown, RESULTS.read_text() if RESULTS.exists() else None)
