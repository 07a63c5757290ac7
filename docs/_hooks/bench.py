"""MkDocs hook: benchmark figures on the pages come from bench/RESULTS.md (``make bench``) when the site is built.

``<!-- bench: SECTION; MEASURE -->`` becomes the median (second cell) of the first row of RESULTS.md whose
first cell contains MEASURE, in a section whose heading contains SECTION; ``<!-- bench: SECTION; ROW; COLUMN -->``
the cell of such a row under the column whose header contains COLUMN (all case-insensitive; sections that measure
other frameworks, the anchors, are skipped unless SECTION names them). ``<!-- bench: measured -->`` becomes the
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
    header: tuple[str, ...]
    cells: tuple[str, ...]


def parse(text: str) -> tuple[str | None, list[Row]]:
    """The "Measured ..." line, and every table row with its section heading and its table's header."""
    measured = None
    section = ""
    header: tuple[str, ...] = ()
    rows: list[Row] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("Measured ") and measured is None:
            measured = line.strip().rstrip(".")
        elif line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|"):
            cells = tuple(c.strip() for c in line.strip().strip("|").split("|"))
            if set(line) <= set("|-: "):
                header = tuple(c.strip() for c in previous.strip().strip("|").split("|"))
            elif not previous.startswith("|"):
                pass  # a header row: its cells become the header when the separator line follows
            else:
                rows.append(Row(section, header, cells))
        previous = line
    return measured, rows


def figure(spec: str, measured: str | None, rows: list[Row]) -> str:
    """``SECTION; MEASURE``: the second cell of the row whose first cell contains MEASURE;
    ``SECTION; ROW; COLUMN``: the cell of that row under the header that contains COLUMN."""
    if spec.strip() == "measured":
        if measured is None:
            return "No benchmark results yet: `make bench` writes them to bench/RESULTS.md."
        return f"{measured} (bench/RESULTS.md, written by `make bench`)."
    section, row_key, *column = (part.strip().lower() for part in spec.split(";"))
    for row in rows:
        heading = row.section.lower()
        if any(other in heading and other not in section for other in _OTHERS):
            continue  # a section measuring other frameworks (the anchors) never stands for perdure's engines
        if section not in heading or row_key not in row.cells[0].lower():
            continue
        if not column:
            value = row.cells[1] if len(row.cells) > 1 else ""
        else:
            found = [i for i, name in enumerate(row.header) if column[0] in name.lower()]
            value = row.cells[found[0]] if found and found[0] < len(row.cells) else ""
        if value and re.match(r"^[\d.,]+ ?\w", value):
            return value
    return NOT_MEASURED


def render(markdown: str, results: str | None) -> str:
    measured, rows = parse(results) if results is not None else (None, [])
    return _MARK.sub(lambda m: figure(m.group("spec"), measured, rows), markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if "<!-- bench:" not in markdown:
        return markdown
    return render(markdown, RESULTS.read_text() if RESULTS.exists() else None)
