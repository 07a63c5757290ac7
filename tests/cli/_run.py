"""The real ``perdure`` command in a subprocess (awaitable, so that a worker in the test's loop keeps running)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


async def perdure(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Done:
    # Plugins off: an installed Logfire registers a pydantic plugin whose import costs most of a second.
    environ = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__", "COLUMNS": "200", **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perdure",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
