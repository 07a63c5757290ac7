"""Journal maintenance that needs no agent: retention (prune) and duration parsing for the CLI."""

from __future__ import annotations

import re

from .._exceptions import UserError
from ._journal import Journal, now

__all__ = ["parse_duration", "prune"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"30d"``, ``"1w"`` (or a plain number of seconds) → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise UserError(f"cannot read {text!r} as a duration; write it like 90s, 10m, 2h, 30d or 1w")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def prune(journal: Journal, older_than: float, *, dry_run: bool = False) -> list[str]:
    """Delete finished runs (completed, failed, cancelled) that finished more than ``older_than`` seconds ago,
    with their steps. Runs in flight or waiting are never pruned. Returns the pruned run ids."""
    cutoff = now() - older_than
    ids = [
        r[0]
        for r in journal.query(
            "SELECT run_id FROM perdure_runs WHERE finished_at IS NOT NULL AND finished_at < ? "
            "AND status IN ('completed', 'failed', 'cancelled')",
            (cutoff,),
        )
    ]
    if ids and not dry_run:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            journal.write(
                [
                    (f"DELETE FROM perdure_steps WHERE run_id IN ({marks})", chunk),
                    (
                        f"DELETE FROM perdure_runs WHERE run_id IN ({marks}) AND finished_at IS NOT NULL",
                        chunk,
                    ),
                ]
            )
    return ids
