"""Every name perdure stores, on every engine, pinned in one place: tests/core/persisted_names.json.

Journal tables and columns, DBOS workflow/step/event names, Temporal workflow/activity/signal/update/query/memo names,
Prefect flow/task/deployment names, step keys: a journal, history or record written by one release is read by the
next, so none of these may change with a Python rename. This test fails when one does; if the change is deliberate,
it needs a migration (or a compatibility reader) first, then regenerate the file:
``python tests/core/test_persisted_names.py --write``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from perdure._ops import approval_key, model_key, tool_key, unknown_key

PINNED = Path(__file__).with_name("persisted_names.json")
MODULES = ["perdure.local._names", "perdure.dbos._names", "perdure.temporal._names", "perdure.prefect._names"]


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    raise TypeError(type(value))


def stored_names() -> dict[str, Any]:
    names: dict[str, Any] = {
        "step keys": [model_key(3), tool_key(3, "call_1"), approval_key(3, "call_1"), unknown_key(3, "call_1")]
    }
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        constants = {}
        for name in sorted(vars(module)):
            value = getattr(module, name)
            if name.isupper() and not name.startswith("_"):
                try:
                    constants[name] = _plain(value)
                except TypeError:
                    continue
        names[module_name] = constants
    return names


def test_every_stored_name_is_pinned() -> None:
    pinned = json.loads(PINNED.read_text())
    assert stored_names() == pinned


if __name__ == "__main__" and "--write" in sys.argv:
    PINNED.write_text(json.dumps(stored_names(), indent=2, sort_keys=True) + "\n")
