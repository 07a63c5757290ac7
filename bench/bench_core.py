"""Core benchmarks: cold import time and the loop's own cost per model turn + tool call."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import median, ms, n_turn_script, workload_agent

ROOT = Path(__file__).resolve().parent.parent
CORE_VENV = ROOT / "bench" / ".venv-core"


def core_python() -> str:
    """A venv with perdure and its core dependencies only: what `pip install perdure` gives a user.

    The dev venv also holds logfire, whose pydantic plugin loads on the first model class and would be
    charged to perdure's import time.
    """
    python = CORE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CORE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
    return str(python)


def import_time(repeats: int = 15) -> dict[str, float]:
    python = core_python()

    def whole(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([python, "-c", code], check=True)
        return time.perf_counter() - t

    base, full, cumulative = [], [], []
    for _ in range(repeats):
        base.append(whole("pass"))
        full.append(whole("import perdure"))
        err = subprocess.run(
            [python, "-X", "importtime", "-c", "import perdure"], capture_output=True, text=True, check=True
        ).stderr
        for line in err.splitlines():
            m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+perdure$", line)
            if m:
                cumulative.append(int(m.group(2)) / 1e6)
    return {"python": median(base), "import": median(full), "importtime": median(cumulative)}


def loop_cost(repeats: int = 30) -> float:
    """Marginal cost of one model turn + one tool call in a plain run: (25-turn run - 5-turn run) / 20."""
    short = workload_agent("short", n_turn_script(5))
    long = workload_agent("long", n_turn_script(25))

    async def batch(agent: object, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await agent.run("go")  # type: ignore[attr-defined]
        return (time.perf_counter() - t) / n

    async def main() -> float:
        await batch(short, 5)
        await batch(long, 5)
        diffs = []
        for _ in range(repeats):
            diffs.append((await batch(long, 10) - await batch(short, 10)) / 20)
        return median(diffs)

    return asyncio.run(main())


def run() -> str:
    it = import_time()
    cost = loop_cost()
    return "\n".join(
        [
            "## Core (issue 2)",
            "",
            "Import measured in a venv holding perdure and its core dependencies only (bench/.venv-core).",
            "",
            "| measure | median | goal |",
            "|---|---|---|",
            f"| `python -c 'import perdure'`, whole process | {ms(it['import'])} | |",
            f"| `python -c 'pass'`, whole process (baseline) | {ms(it['python'])} | |",
            f"| cold `import perdure` (difference of the two above) | {ms(it['import'] - it['python'])} | <= 150 ms |",
            f"| `-X importtime` cumulative for `perdure` | {ms(it['importtime'])} | <= 150 ms |",
            f"| loop cost per model turn + tool call (FunctionModel, trivial tool) | {ms(cost)} | <= 0.2 ms |",
            "",
        ]
    )


if __name__ == "__main__":
    print(run())
