"""The test side of the conformance kit: run driver operations in real subprocesses, crash them with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .scenarios import effects

__all__ = ["Harness"]


class Harness:
    """Runs one engine's ``Driver`` in child processes.

    ``driver`` is ``"module:Class"``; ``options`` reach the driver as JSON; ``workdir`` holds the side-effect log
    and crash markers.
    """

    def __init__(self, engine: str, driver: str, options: dict[str, Any], workdir: Path, *, timeout: float = 120):
        self.engine = engine
        self.driver = driver
        self.options = options
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.effects_path = self.workdir / "effects.log"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Harness({self.engine})"

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PERDURE_EFFECTS"] = str(self.effects_path)
        env["PERDURE_CONFORMANCE_OPTIONS"] = json.dumps(self.options)
        env.pop("PERDURE_CRASH_AT", None)
        env.pop("PERDURE_SCENARIO_VARIANT", None)
        # Children load no pydantic plugins (logfire's costs ~0.5 s per process); the scenarios need none.
        env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        env.update(extra or {})
        return env

    def spawn(self, op: str, extra_env: dict[str, str] | None = None, **args: Any) -> subprocess.Popen[str]:
        """Start ``op`` in a child process and return at once."""
        cmd = [sys.executable, "-m", "perdure.testing.conformance.child", self.driver, op, json.dumps(args)]
        return subprocess.Popen(
            cmd,
            env=self._env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.workdir,
        )

    def finish(self, proc: subprocess.Popen[str], op: str = "op") -> dict[str, Any]:
        """Wait for a child and return its outcome (raises with its stderr if it crashed)."""
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{self.engine} {op} timed out after {self.timeout}s\n{err[-4000:]}") from None
        for line in reversed(out.splitlines()):
            if line.startswith("PERDURE-RESULT "):
                result: dict[str, Any] = json.loads(line[len("PERDURE-RESULT ") :])
                return result
        raise AssertionError(f"{self.engine} {op} exited {proc.returncode} without a result\n{err[-4000:]}")

    def call(self, op: str, extra_env: dict[str, str] | None = None, **args: Any) -> dict[str, Any]:
        """Run ``op`` in a child process to the end; its outcome."""
        return self.finish(self.spawn(op, extra_env, **args), op)

    def crash(self, op: str, point: str, *, run_id: str, extra_env: dict[str, str] | None = None, **args: Any) -> None:
        """Run ``op`` in a child and SIGKILL it when it reaches the crash ``point``."""
        env = {"PERDURE_CRASH_AT": point, **(extra_env or {})}
        proc = self.spawn(op, env, run_id=run_id, **args)
        marker = self.workdir / f"crashed-{run_id}-{point.replace(':', '_')}"
        self._wait_for(proc, marker, f"crash point {point!r}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL

    def crash_after_result(self, op: str, **args: Any) -> dict[str, Any]:
        """Run ``op`` in a child; as soon as it reports its outcome, SIGKILL it (no graceful teardown)."""
        proc = self.spawn(op, {"PERDURE_HOLD_AFTER_RESULT": "1"}, **args)
        assert proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        for line in proc.stdout:
            if line.startswith("PERDURE-RESULT "):
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
                result: dict[str, Any] = json.loads(line[len("PERDURE-RESULT ") :])
                return result
            if time.monotonic() > deadline:
                break
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"{self.engine} {op} ended without a result\n{err[-4000:]}")

    def wait_for_file(self, proc: subprocess.Popen[str], path: Path, what: str) -> None:
        self._wait_for(proc, path, what)

    def _wait_for(self, proc: subprocess.Popen[str], path: Path, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not path.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(
                    f"{self.engine}: the child exited ({proc.returncode}) before reaching {what}\n"
                    f"{out[-2000:]}\n{err[-4000:]}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{self.engine}: {what} not reached in {self.timeout}s")
            time.sleep(0.01)

    def effects(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return effects(self.effects_path, run_id)

    def tool_effects(self, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.effects(run_id) if e["kind"] == "tool" and (name is None or e["name"] == name)]

    def model_effects(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in self.effects(run_id) if e["kind"] == "model"]
