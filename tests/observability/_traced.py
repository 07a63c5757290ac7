"""A conformance ``Driver`` that wraps any engine's driver and exports the child's spans to a JSON-lines file.

The child process configures the OpenTelemetry SDK globally, as a user's application would; the file is named
by ``PERDURE_TEST_SPANS_FILE``. The wrapped driver is ``options["traced_driver"]`` ("module:Class").
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from opentelemetry import trace

from perdure.testing.conformance.driver import Driver

from ._export import SPANS_FILE_ENV, file_tracer_provider


class TracedDriver(Driver):
    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        module, _, name = options["traced_driver"].partition(":")
        inner_options = {k: v for k, v in options.items() if k != "traced_driver"}
        self.inner: Driver = getattr(importlib.import_module(module), name)(inner_options)
        self.provider = file_tracer_provider(os.environ[SPANS_FILE_ENV])
        trace.set_tracer_provider(self.provider)

    async def setup(self) -> None:
        await self.inner.setup()

    async def teardown(self) -> None:
        try:
            await self.inner.teardown()
        finally:
            self.provider.shutdown()

    async def run(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await self.inner.run(scenario, run_id)

    async def resume(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await self.inner.resume(scenario, run_id)

    async def approve(
        self, scenario: str, run_id: str, tool_call_id: str, approved: bool, note: str | None
    ) -> dict[str, Any]:
        return await self.inner.approve(scenario, run_id, tool_call_id, approved, note)

    async def cancel(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await self.inner.cancel(scenario, run_id)

    async def status(self, scenario: str, run_id: str) -> dict[str, Any]:
        return await self.inner.status(scenario, run_id)
