"""Parameter descriptions from docstrings in the Google, NumPy and Sphinx styles."""

from __future__ import annotations

import inspect
import re

_GOOGLE_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ANY_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_GOOGLE_PARAM = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_UNDERLINE = re.compile(r"^-{3,}\s*$")
_NUMPY_PARAM = re.compile(r"^(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(:.*)?$")  # "x, y : int" too
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (summary, {parameter: description}) for a docstring in any of the three styles."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    body_end = len(lines)

    # Sphinx: ":param x: ..." lines, continuation lines indented.
    current: str | None = None
    for i, line in enumerate(lines):
        m = _SPHINX_PARAM.match(line.strip())
        if m:
            body_end = min(body_end, i)
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif line.strip().startswith(":"):
            body_end = min(body_end, i)
            current = None
        elif current and line.startswith((" ", "\t")) and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
        else:
            current = None

    # NumPy: "Parameters" then "----------", then "name : type" with indented descriptions.
    for i in range(len(lines) - 1):
        if lines[i].strip() in ("Parameters", "Other Parameters") and _NUMPY_UNDERLINE.match(lines[i + 1].strip()):
            body_end = min(body_end, i)
            names: list[str] = []
            for line in lines[i + 2 :]:
                if not line.strip():
                    continue
                if not line.startswith((" ", "\t")):
                    m = _NUMPY_PARAM.match(line.strip())
                    if m and not _NUMPY_UNDERLINE.match(line.strip()):
                        names = [n.strip().lstrip("*") for n in m.group(1).split(",")]
                        params.update(dict.fromkeys(names, ""))
                        continue
                    break
                for name in names:
                    params[name] = f"{params[name]} {line.strip()}".strip()
        elif _NUMPY_UNDERLINE.match(lines[i + 1].strip()) and lines[i].strip():
            body_end = min(body_end, i)

    # Google: "Args:" then indented "name (type): description".
    for i, line in enumerate(lines):
        if not _GOOGLE_SECTION.match(line.strip()) or line.startswith((" ", "\t")):
            continue
        body_end = min(body_end, i)
        current = None
        indent: int | None = None
        for sub in lines[i + 1 :]:
            if not sub.strip():
                continue
            width = len(sub) - len(sub.lstrip())
            if width == 0:
                break
            if indent is None:
                indent = width
            if width == indent:
                m = _GOOGLE_PARAM.match(sub.strip())
                if m:
                    current = m.group(1).lstrip("*")
                    params[current] = m.group(3).strip()
                    continue
            if current is not None:
                params[current] = f"{params[current]} {sub.strip()}".strip()
    for i, line in enumerate(lines):
        if _GOOGLE_ANY_SECTION.match(line.strip()) and not line.startswith((" ", "\t")):
            body_end = min(body_end, i)
            break

    summary = "\n".join(lines[:body_end]).strip()
    return summary, {k: v for k, v in params.items() if v}
