"""DBOS under a PostgreSQL crash: a private PostgreSQL (initdb in a temp dir, its own port) is stopped with
``pg_ctl stop -m immediate`` (the server dies as in a crash: no checkpoint, clients cut off) while a DBOSAgent
process has several runs inside tool calls, then started again. The runs finish; no recorded step executed again,
and the at-most-once call executed at most once. A second case kills the DBOS process while the database is down
and lets a new process recover the runs once it is back.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (or ``nobody``)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import require
from .conftest import Workspace, outcome, wait_until

RUNS = ["d0", "d1", "d2", "d3"]


@dataclass
class Postgres:
    data: Path
    port: int
    run_as: list[str]
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/perdure_faults"

    def ctl(self, *args: str) -> None:
        # The socket directory is the server's own (the default one may not be writable by its user).
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1"
        cmd = [*self.run_as, self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.data.parent / "log")]
        done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self.ctl("start", "-w")

    def crash(self) -> None:
        self.ctl("stop", "-m", "immediate", "-w")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    require(initdb is not None and pg_ctl is not None, "PostgreSQL's initdb and pg_ctl (apt install postgresql)")
    assert initdb is not None and pg_ctl is not None
    base = Path(tempfile.mkdtemp(prefix="perdure-pg-", dir="/tmp"))  # short: the socket path has a length limit
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        require(shutil.which("runuser") is not None, "runuser (to run PostgreSQL as a user other than root)")
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", user, "--"]
    os.chmod(base, 0o700)
    data = base / "data"
    made = subprocess.run(
        [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    server = Postgres(data, _free_port(), run_as, pg_ctl)
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "stop", "-m", "immediate", "-w"], capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# "killed" found a bug (fixed): an interrupted at-most-once call of a parallel batch ran again on DBOS recovery.
@pytest.mark.parametrize("process", ["survives", "killed"])
def test_runs_survive_postgres_crashing_mid_step(ws: Workspace, postgres: Postgres, process: str) -> None:
    # Both calls of every run's first turn are held inside their bodies: the at-most-once charge has its durable
    # "started" mark, and neither call has a recorded result, when the database dies.
    env = {"FAULTS_GATE": "tool:reserve,tool:charge"}
    worker = ws.spawn("dbos", postgres.url, "pg", *RUNS, env=env)

    def inside() -> int:
        return sum(e["event"] == "start" for e in ws.events())

    wait_until(lambda: inside() == 2 * len(RUNS) or worker.poll() is not None, "every run inside its first calls")
    assert worker.poll() is None, worker.communicate()[1]
    postgres.crash()  # mid-step: the tool calls are executing, none is recorded
    (ws.dir / "release").write_text("")  # the tools return into a process whose database is gone
    wait_until(lambda: sum(e["event"] == "end" for e in ws.events()) == 2 * len(RUNS), "the tools to return")
    if process == "killed":
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        postgres.start()
        worker = ws.spawn("dbos", postgres.url, "pg", *RUNS)  # launching DBOS recovers the dead process's runs
    else:
        postgres.start()
    out, err = worker.communicate(timeout=150)
    assert worker.returncode == 0, err
    outputs = outcome(out, err)
    _check(ws, outputs, err)


def _check(ws: Workspace, outputs: dict[str, Any], err: str) -> None:
    assert set(outputs) == set(RUNS), outputs
    starts: dict[str, list[dict[str, Any]]] = {}
    for e in ws.events():
        if e["kind"] == "tool" and e["event"] == "start":
            starts.setdefault(e["key"], []).append(e)
    for run_id in RUNS:
        assert "output" in outputs[run_id], (outputs[run_id], err)
        text = outputs[run_id]["output"]
        for tool, n in (("reserve", 1), ("charge", 1), ("notify", 2)):
            execs = sorted(starts.get(f"{run_id}/turn/{n}/tool/{tool}-{n}", []), key=lambda e: e["t"])
            if tool == "charge":
                assert len(execs) <= 1, (run_id, "an at-most-once call executed twice", execs)
            recorded = re.search(rf"{tool}=(?:{tool} {run_id} \[([0-9a-f]{{32}})\])?", text)
            assert recorded is not None, (run_id, tool, text)
            if recorded.group(1) is None:
                assert tool == "charge", (run_id, tool, text)  # its outcome may be unknown, never repeated
                continue
            # The result the run went on with is the last execution's: nothing ran the call after it was recorded.
            assert execs and recorded.group(1) == execs[-1]["nonce"], (run_id, tool, "executed again", execs, text)
