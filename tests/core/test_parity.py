"""Every engine's agent class offers the same methods with the same signatures, async and sync.

They share them through ``perdure.durable.base.DurableAgentBase``: an engine that overrides one must keep its
signature; engine-specific methods (``serve``, ``workflow_class``...) are extra, never a replacement.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from perdure.durable.base import DurableAgentBase

ENGINES = {
    "local": ("perdure", "DurableAgent"),
    "memory": ("perdure.testing", "MemoryAgent"),
    "dbos": ("perdure.dbos", "DBOSAgent"),
    "temporal": ("perdure.temporal", "TemporalAgent"),
    "prefect": ("perdure.prefect", "PrefectAgent"),
}

SHARED = sorted(
    name for name, member in vars(DurableAgentBase).items() if not name.startswith("_") and callable(member)
)


def test_the_shared_method_set() -> None:
    asynchronous = [n for n in SHARED if not n.endswith("_sync")]
    assert asynchronous == [
        "approve",
        "cancel",
        "deny",
        "get_run",
        "list_runs",
        "recover",
        "resume",
        "run",
        "start",
        "wait",
    ]
    assert sorted(n for n in SHARED if n.endswith("_sync")) == sorted(f"{n}_sync" for n in asynchronous)
    for name in asynchronous:
        assert inspect.iscoroutinefunction(getattr(DurableAgentBase, name)), name
        assert not inspect.iscoroutinefunction(getattr(DurableAgentBase, f"{name}_sync")), name


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_engine_has_the_same_methods_and_signatures(engine: str) -> None:
    module, name = ENGINES[engine]
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, DurableAgentBase)
    for method in SHARED:
        ours, shared = getattr(cls, method), getattr(DurableAgentBase, method)
        assert inspect.signature(ours) == inspect.signature(shared), f"{name}.{method}"
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(shared), f"{name}.{method}"
