"""Child-process entry of the conformance kit: ``python -m perdure.testing.conformance.child DRIVER OP JSON``.

Prints one line, ``PERDURE-RESULT <json>``, the outcome. With ``PERDURE_HOLD_AFTER_RESULT=1`` the child then
blocks (before any teardown) so the test can SIGKILL it while the run waits.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
from typing import Any

from .driver import Driver


async def _main(argv: list[str]) -> dict[str, Any]:
    driver_path, op, payload = argv
    module, _, cls_name = driver_path.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    options = json.loads(os.environ.get("PERDURE_CONFORMANCE_OPTIONS", "{}"))
    args = json.loads(payload)
    driver: Driver = cls(options)
    await driver.setup()
    try:
        method = getattr(driver, op)
        result: dict[str, Any] = await method(**args)
        _report(result)
        return result
    finally:
        await driver.teardown()


def _report(result: dict[str, Any]) -> None:
    sys.stdout.write("PERDURE-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    if os.environ.get("PERDURE_HOLD_AFTER_RESULT") == "1":
        while True:
            time.sleep(0.05)


def main() -> None:
    asyncio.run(_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
