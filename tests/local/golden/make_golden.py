"""Write ``journal-v1.db``: the golden journal that tests/local/test_golden.py replays on every test run.

    python tests/local/golden/make_golden.py

Only for a deliberate, migrated change of the journal format: the point of the committed file is that it was
written by an earlier perdure. It holds

* ``golden-completed``: a finished run of the golden agent;
* ``golden-orphan``: a run whose process was killed with SIGKILL inside the ``ship`` tool, then made to look
  owned by a process on another host (``golden-host``) whose lease expired: only lease expiry makes it
  recoverable, as for a worker that died on another machine.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def _child(journal: str) -> None:
    """In a child process: start the orphan run; ``ship`` kills this process."""
    from tests.local.test_golden import CRASH_ENV, build_agent

    from perdure import DurableAgent

    os.environ[CRASH_ENV] = "1"
    DurableAgent(build_agent(), journal=journal).run_sync("ship order 2", run_id="golden-orphan")
    raise SystemExit("the golden child should have been killed inside ship")


def main() -> None:
    from tests.local.test_golden import GOLDEN, build_agent

    from perdure import DurableAgent

    with tempfile.TemporaryDirectory() as tmp:
        journal = str(Path(tmp) / "golden.db")
        durable = DurableAgent(build_agent(), journal=journal)
        durable.run_sync("ship order 1", run_id="golden-completed")

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, __file__, "--child", journal], env=env, capture_output=True, text=True)
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"the child was not killed inside ship (exit {proc.returncode}):\n{proc.stderr}")
        durable._journal.close()

        conn = sqlite3.connect(journal)
        # As if recorded a day ago, so the orphan's 30 s lease has long expired even right after regeneration.
        conn.execute(
            "UPDATE perdure_runs SET created_at = created_at - 86400, updated_at = updated_at - 86400, "
            "finished_at = finished_at - 86400"
        )
        conn.execute("UPDATE perdure_steps SET started_at = started_at - 86400, finished_at = finished_at - 86400")
        created = conn.execute("SELECT created_at FROM perdure_runs WHERE run_id = 'golden-orphan'").fetchone()[0]
        conn.execute(
            "UPDATE perdure_runs SET owner = 'golden-host:4242:1', lease_expires = ? WHERE run_id = 'golden-orphan'",
            (created + 30,),
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.close()
        data = Path(journal).read_bytes()
    GOLDEN.write_bytes(data)
    print(f"wrote {GOLDEN} ({len(data)} bytes)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
    else:
        main()
