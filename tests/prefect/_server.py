"""One real Prefect server per test session, shared by in-process tests and child processes.

``prefect server start`` on a free loopback port, with its own ``PREFECT_HOME`` and SQLite database in a temp
dir; the child processes of the conformance suite reach it through ``PREFECT_API_URL``. Services that nothing
here needs (scheduler, late runs, automations, the foreman) are off to keep the 2-core machine free; the event
persister and the task run recorder stay on, since task runs reach the server as events.

Prefect's own client retries HTTP 429/503 (``PREFECT_CLIENT_MAX_RETRIES``, with backoff); the SQLite-backed
server answers 503 when it is busy, so the children get a larger retry budget than the default.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require

START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="perdure-prefect-"))
        self.home = self.root / "home"
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def client_env(self) -> dict[str, str]:
        """Settings for a process that talks to this server."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_CLIENT_MAX_RETRIES": "10",
        }

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{self.root / 'prefect.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
            PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
            PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
            PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        )
        env.pop("PREFECT_API_URL", None)
        cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited ({self.proc.returncode}):\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Prefect server did not answer in {START_TIMEOUT}s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


_SERVER: PrefectServer | None = None
_FAILURE: str | None = None


def shared_server(config: pytest.Config) -> PrefectServer:
    """The session's server: started on first use, stopped when the session ends (or the test is skipped)."""
    global _SERVER, _FAILURE
    if _SERVER is None and _FAILURE is None:
        try:
            import prefect  # noqa: F401
        except ImportError:
            _FAILURE = "prefect (pip install 'perdure[prefect]')"
        else:
            server = PrefectServer()
            config.add_cleanup(server.stop)
            try:
                server.start()
            except (OSError, RuntimeError) as e:
                _FAILURE = f"a local Prefect server ({e})"
            else:
                _SERVER = server
    require(_SERVER is not None, _FAILURE or "a local Prefect server")
    assert _SERVER is not None
    return _SERVER
