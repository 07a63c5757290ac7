"""``make bench``: run every benchmark section side by side on this machine and write bench/RESULTS.md.

Sections run one after another in this process (``--only NAME`` runs one). Figures are medians; ratios are
computed from numbers measured in the same run. The machine is shared and noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _common import machine, now_utc  # noqa: E402

SECTIONS = ["core", "local", "observability", "dbos", "temporal", "prefect"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action="append", choices=SECTIONS)
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    chosen = args.only or SECTIONS
    parts = [
        "# perdure benchmarks",
        "",
        f"Measured {now_utc()} on {machine()}.",
        "",
        "Produced by `make bench` (bench/run.py). Medians of repeated measurements; every ratio compares numbers "
        "measured side by side in this one run. The machine is shared and noisy: read ratios, not absolutes.",
        "",
    ]
    failed = False
    for name in chosen:
        t = time.monotonic()
        try:
            module = importlib.import_module(f"bench_{name}")
            parts.append(module.run())
        except Exception:
            failed = True
            parts.append(f"## {name}\n\nThis section failed:\n\n```\n{traceback.format_exc()}```\n")
        print(f"bench: {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr)
    Path(args.output).write_text("\n".join(parts))
    print(f"bench: wrote {args.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
